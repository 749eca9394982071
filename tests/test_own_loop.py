"""Your own loop (a --script trial, autotune.apply): every built-in knob takes effect, measured, or
is refused with its reason; the session's helpers; `space show --script`; docs/session.md's
example and knob table.

The matrix runs in one subprocess (tests/own_loop_matrix.py): each knob set away from its
baseline as a real `trial run --script` of tests/own_loop_probe.py and through autotune.apply. A
built-in knob with no expectation here fails `test_every_builtin_knob_has_a_cell`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest
import torch
from click.testing import CliRunner

import autotune
from autotune.cli import cli
from autotune.hardware import detect
from autotune.knob import OWN_LOOP_DATA, OWN_LOOP_STEPS, Need, Traits, exclusion
from autotune.registry import DEFAULT_PLUGINS, load_registry
from autotune.plugins.training.lr_schedule import lr_at_step, warmup_steps

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
STEPS = 6
BASE_LR = 0.01  # the script workload's baseline recipe


def builtin_knobs() -> list[str]:
    registry = load_registry(entry_points=False)
    return [name for name, plugin in registry.knob_plugins.items() if plugin in DEFAULT_PLUGINS]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("matrix")
    proc = subprocess.run([sys.executable, str(TESTS / "own_loop_matrix.py"), str(out)], capture_output=True,
                          text=True, timeout=300, cwd=out, env={**os.environ, "AUTOTUNE_HOME": str(out / "home")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# effects: what the probe measured under the knob's tried value (own_loop_matrix.TRIED), against
# the baseline cell's record where the baseline differs
def _lr_schedule(r: dict, base: dict) -> None:
    expected = [lr_at_step("cosine", BASE_LR, k, STEPS, warmup_steps(0.05, STEPS)) for k in range(STEPS)]
    assert r["lrs"] == pytest.approx(expected) and r["lrs"][-1] < BASE_LR / 5  # moved every step after the warm-up
    assert set(base["lrs"]) == {BASE_LR}


def _threads(r: dict, base: dict) -> None:
    assert set(r["threads"]) == {1} and (detect("cpu").cpu_count == 1 or set(base["threads"]) != {1})


def _activation_checkpointing(r: dict, base: dict) -> None:
    assert set(r["conv_forwards"]) == {2} and set(base["conv_forwards"]) == {1}  # recomputed in backward


def _pruning(r: dict, base: dict) -> None:
    assert r["nonzero_start"] == pytest.approx(0.5, abs=0.02) and r["nonzero_end"] == pytest.approx(0.5, abs=0.02)
    assert base["nonzero_end"] > 0.99


def _optional(check: Callable[[dict, dict], None], unavailable: str) -> "Expect":
    return Expect(check, refused_unless_available=unavailable)


class Expect(NamedTuple):
    """A knob's expectation in your own loop: `effect(record, baseline_record)` asserts it took
    effect; `refused` is a reason it must be refused with instead; `refused_unless_available`, a
    reason this machine may give (then the knob is refused with it, the same in every entry)."""

    effect: Callable[[dict, dict], None] | None = None
    refused: str | None = None
    refused_unless_available: str | None = None
    script_refused: str | None = None  # a --script trial refuses it though apply takes it
    apply_refused: str | None = None


EXPECT: dict[str, Expect] = {
    "batch_size": Expect(lambda r, b: (r["loader"]["batch_size"], set(r["rows"])) == (16, {16})),
    "optimizer": Expect(lambda r, b: (r["optimizer"], b["optimizer"]) == ("Adam", "SGD")),
    "learning_rate": Expect(lambda r, b: set(r["lrs"]) == {0.05}),
    "workers": Expect(lambda r, b: (r["loader"]["num_workers"], b["loader"]["num_workers"]) == (1, 0)),
    "precision": Expect(lambda r, b: (set(r["dtypes"]), set(b["dtypes"])) == ({"torch.bfloat16"}, {"torch.float32"})),
    "pruning": Expect(_pruning),
    "channels_last": Expect(lambda r, b: r["channels_last_weight"] and all(r["channels_last_inputs"])
                            and not b["channels_last_weight"] and not any(b["channels_last_inputs"])),
    "cudnn_benchmark": _optional(lambda r, b: r["notes"]["cudnn_benchmark"] == "True", "needs CUDA"),
    "torch_compile": _optional(lambda r, b: r["compiled"] and not b["compiled"], "needs a C++ compiler"),
    "threads": Expect(_threads),
    "data_parallel": Expect(script_refused="a --script trial is one process", apply_refused="torchrun --nproc-per-node N"),
    "lr_schedule": Expect(_lr_schedule),
    "optimizer_impl": Expect(lambda r, b: r["optimizer_defaults"]["foreach"] is True
                             and b["optimizer_defaults"]["foreach"] is None),
    "matmul_precision": _optional(lambda r, b: (set(r["matmul"]), set(b["matmul"])) == ({"medium"}, {"highest"}),
                                  "no reduced-precision fp32 matmul"),
    "activation_checkpointing": Expect(_activation_checkpointing),
    "micro_batches": Expect(refused=OWN_LOOP_STEPS),
    "structured_pruning": _optional(None, "needs torch-pruning")._replace(refused=OWN_LOOP_DATA),
}
ENTRY_POINTS = ("workload", "script", "apply")


def test_every_builtin_knob_has_a_cell() -> None:
    assert sorted(EXPECT) == sorted(builtin_knobs()), "add the new knob's expectation in your own loop to EXPECT"


def _refused(outcome: dict, entry: str) -> str | None:
    """The one-line refusal of a cell, checked to be one (exit code 2 for a script), or None."""
    if "refused" not in outcome:
        return None
    if entry == "script":
        assert outcome["exit"] == 2 and "record" not in outcome, outcome
    assert "\n" not in outcome["refused"]
    return outcome["refused"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("knob", builtin_knobs())
def test_each_knob_takes_effect_or_is_refused_with_its_reason(matrix: dict, knob: str, entry: str) -> None:
    expect = EXPECT[knob]
    if entry == "workload":  # measured by the knob's own test, through the engine's loop
        text = (TESTS / "knobs" / f"test_{knob}.py").read_text()
        assert "def test_knob_changes_the_run" in text
        return
    outcome, base = matrix[entry][knob], matrix[entry]["baseline"]["record"]
    refusal = _refused(outcome, entry)
    wanted = expect.refused or (expect.script_refused if entry == "script" else expect.apply_refused)
    if refusal is not None and expect.refused_unless_available and expect.refused_unless_available in refusal:
        assert f"'{knob}'" in refusal
        return
    if wanted is not None:
        assert refusal is not None and wanted in refusal and knob in refusal, outcome
        return
    assert refusal is None, outcome
    if entry == "script":
        assert outcome["exit"] == 0 and outcome["status"] == "ok", outcome
    assert expect.effect is not None
    result = expect.effect(outcome["record"], base)
    assert result is None or result is True, (knob, entry, outcome["record"])


def test_apply_refuses_a_schedule_it_cannot_size(matrix: dict) -> None:
    refusal = matrix["apply"]["lr_schedule_unsized"]["refused"]
    assert "lr_schedule cosine" in refusal and "total_steps=N" in refusal


def test_the_refused_knobs_are_left_out_of_a_script_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a script study searches: `space show --script` (the space `study start --script` uses)."""
    monkeypatch.setenv("AUTOTUNE_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["space", "show", "--script", str(TESTS / "own_loop_probe.py"), "--json"])
    assert result.exit_code == 0, result.output
    space = json.loads(result.stdout)
    assert space["name"] == ("gpu" if torch.cuda.is_available() else "cpu")
    assert space["excluded"]["micro_batches"] == OWN_LOOP_STEPS
    assert space["excluded"]["structured_pruning"] in (OWN_LOOP_DATA, exclusion(
        load_registry().knob("structured_pruning"), detect(), Traits(own_loop=True)))
    searched = {p["knob"] for p in space["params"]}
    assert {"lr_schedule", "batch_size", "activation_checkpointing"} <= searched
    assert not searched & {"micro_batches", "structured_pruning"}
    text = CliRunner().invoke(cli, ["space", "show", "--script", str(TESTS / "own_loop_probe.py")]).output
    assert re.search(r"micro_batches\s+needs autotune's training loop", text)


def test_to_device_moves_nested_batches_and_keeps_the_pair_form() -> None:
    tuned = autotune.apply({"channels_last": True}, torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1)), device="cpu",
                           total_steps=1)

    @dataclasses.dataclass
    class Batch:
        images: torch.Tensor
        extra: dict

    images = torch.randn(2, 3, 4, 4)
    moved = tuned.to_device({"x": (images, [torch.ones(2)]), "d": Batch(images, {"y": torch.zeros(2)})})
    assert moved["x"][0].is_contiguous(memory_format=torch.channels_last) and isinstance(moved["x"], tuple)
    assert isinstance(moved["x"][1], list) and isinstance(moved["d"], Batch) and moved["d"].extra["y"].shape == (2,)
    assert tuned.to_device(images).is_contiguous(memory_format=torch.channels_last)
    inputs, targets = tuned.to_device(images, torch.ones(2))
    assert inputs.is_contiguous(memory_format=torch.channels_last) and targets.shape == (2,)
    tuned.close()


def test_a_knob_hooking_an_event_your_loop_cannot_fire_is_refused(tmp_path: Path) -> None:
    """A third-party knob whose STEP handler does the step itself (gradient accumulation) and
    declares no Need: refused by apply and by `trial run --script --set`, naming it."""
    plugin = str(TESTS / "plugin_files" / "grad_accumulation.py")
    with pytest.raises(autotune.UsageError, match="knob 'accumulation_steps' hooks the loop event step"):
        autotune.apply({"accumulation_steps": 2}, torch.nn.Linear(4, 2), device="cpu", plugin_paths=(plugin,))
    result = CliRunner().invoke(cli, ["trial", "run", "--script", str(TESTS / "own_loop_probe.py"), "--plugin", plugin,
                                      "--set", "accumulation_steps=2", "--budget-steps", "2"])
    assert result.exit_code == 2 and "knob 'accumulation_steps' hooks the loop event step" in result.output


def _example(tmp_path: Path) -> Path:
    text = (ROOT / "docs" / "session.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "autotune.session()" in block]
    path = tmp_path / "train.py"
    path.write_text(code)
    return path


def test_the_docs_example_trains_by_hand_and_as_a_trial_with_a_schedule(tmp_path: Path) -> None:
    script = _example(tmp_path)
    env = {**os.environ, "AUTOTUNE_HOME": str(tmp_path / "home")}
    by_hand = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120, env=env)
    assert by_hand.returncode == 0, by_hand.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-m", "autotune.cli", "trial", "run", "--script", str(script),
                           "--budget-steps", "12", "--set", "lr_schedule=linear", "--json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["status"] == "ok" and data["steps"] == 12 and set(data["metrics"]) == {"val_loss", "accuracy"}
    assert data["notes"]["lr_schedule"].startswith("linear over 12 optimizer steps")
    assert "last step at lr" in data["notes"]["lr_schedule"]  # FIT_END fired


def test_the_docs_knob_table_is_the_registry() -> None:
    text = (ROOT / "docs" / "session.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", text, re.M))
    assert sorted(rows) == sorted(builtin_knobs())
    registry = load_registry(entry_points=False)
    for name, cell in rows.items():
        needs = set(registry.knob(name).needs)
        reasons = [reason for need, reason in ((Need.ENGINE_LOOP, OWN_LOOP_STEPS), (Need.TRAINING_DATA, OWN_LOOP_DATA))
                   if need in needs]
        assert bool(reasons) == (cell.strip() == "left out"), name
        assert all(f"| {reason} |" in text for reason in reasons), name
