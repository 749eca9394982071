"""Plugins for real: built-ins, one-file plugins, an installed entry-point package, and the errors
a user sees. Nothing is mocked: the CLI loads real files, trains for real, and pip installs the
example package into a throwaway virtualenv."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from autotune import hookspecs
from autotune.cli import cli
from autotune.errors import PluginError
from autotune.registry import load_registry

from home_processes import CliHome, error_lines

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_FILES = Path(__file__).resolve().parent / "plugin_files"
EXAMPLE = ROOT / "examples" / "autotune-label-smoothing"
DOCS = ROOT / "docs" / "plugins.md"

BUILTIN_KNOBS = {
    "batch_size", "optimizer", "learning_rate", "workers", "precision",
    "pruning", "channels_last", "cudnn_benchmark", "torch_compile", "threads", "data_parallel",
    "structured_pruning",
    "lr_schedule", "optimizer_impl", "matmul_precision",
    "activation_checkpointing", "micro_batches",
}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Plugins installed or configured on this machine must not change what the tests see."""
    monkeypatch.setenv("AUTOTUNE_LOAD_PLUGINS", "")
    monkeypatch.delenv("AUTOTUNE_PLUGINS_DIR", raising=False)
    monkeypatch.setenv("AUTOTUNE_HOME", str(tmp_path / "home"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def run_process(*args: str, python: str | os.PathLike[str] = sys.executable,
                env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m autotune.cli ARGS` in a fresh process: real exit codes, real stderr."""
    return subprocess.run(
        [str(python), "-m", "autotune.cli", *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}, cwd=cwd,
    )


def knob_rows(rows: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """`autotune plugins --json` output -> {knob name: (plugin row, knob entry)}."""
    return {knob["name"]: (row, knob) for row in rows for knob in row["knobs"]}


def plugin_file(name: str) -> str:
    return str(PLUGIN_FILES / name)


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("autotune: error: "), stderr
    return lines[0]


# --- what gets loaded -----------------------------------------------------------------------


def test_plugins_json_lists_exactly_the_builtin_knobs() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    knobs = knob_rows(json.loads(result.stdout))
    assert set(knobs) == BUILTIN_KNOBS
    for name, (row, knob) in knobs.items():
        assert row["module"] == f"autotune.plugins.training.{name}"
        assert row["source"] == "built-in"
        assert knob["kind"] in ("systems", "statistical") and knob["help"]


def test_plugin_file_knob_is_listed_and_reaches_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = plugin_file("probe_smoothing.py")
    listed = invoke("plugins", "--json", "--plugin", path)
    assert listed.exit_code == 0, listed.output
    row, knob = knob_rows(json.loads(listed.stdout))["probe_smoothing"]
    assert row["source"] == "file"
    assert row["path"] == str(Path(path).resolve())
    assert knob["kind"] == "statistical"

    space = invoke("space", "show", "--json", "--plugin", path)
    assert space.exit_code == 0, space.output
    searched = {p["name"]: p for p in json.loads(space.stdout)["params"]}
    assert searched["probe_smoothing"]["knob"] == "probe_smoothing"
    assert "probe_smoothing" in invoke("space", "show", "--plugin", path).output

    record = tmp_path / "record.json"
    monkeypatch.setenv("AUTOTUNE_TEST_RECORD", str(record))
    ran = invoke("trial", "run", "--plugin", path, "--set", "probe_smoothing=0.4", "--budget-steps", "3", "--json")
    assert ran.exit_code == 0, ran.output
    result = json.loads(ran.stdout)
    assert result["status"] == "ok"
    assert result["settings"]["probe_smoothing"] == 0.4

    seen = json.loads(record.read_text())
    assert seen["value"] == 0.4
    assert seen["loss_fn"] == "RecordingLoss" and seen["label_smoothing"] == 0.4
    assert seen["train_calls"] == 3  # the training loop used the knob's loss at every step
    assert seen["eval_calls"] >= 1
    assert seen["notes"]["probe_smoothing"] == 0.4
    # smoothing changed the loss the model was trained on
    assert seen["first_loss"]["smoothed"] != pytest.approx(seen["first_loss"]["plain"], abs=1e-3)


def test_plugins_dir_loads_every_file_in_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(plugin_file("probe_smoothing.py"), tmp_path / "probe_smoothing.py")
    monkeypatch.setenv("AUTOTUNE_PLUGINS_DIR", str(tmp_path))
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    row, _ = knob_rows(json.loads(result.stdout))["probe_smoothing"]
    assert row["source"] == "file"
    assert row["path"] == str((tmp_path / "probe_smoothing.py").resolve())


# --- an installed package with an entry point -------------------------------------------------


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway virtualenv with the example package pip-installed; returns its python.

    A venv made from this venv's python with --system-site-packages sees the *base* interpreter's
    packages, not this venv's (no autotune, no torch). A .pth file that adds this venv's
    site-packages (its .pth files included, so the editable autotune install works) gives the new
    venv the project and its dependencies without reinstalling them.
    """
    root = tmp_path_factory.mktemp("entry-point")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    parent_site = sysconfig.get_path("purelib")
    (site / "autotune_test_parent.pth").write_text(f"import site; site.addsitedir({parent_site!r})\n")
    python = venv / "bin" / "python"
    source = shutil.copytree(EXAMPLE, root / "src")  # build/ and egg-info go here, not in the repo
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    return python


def test_installed_package_is_found_through_its_entry_point(plugin_venv: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AUTOTUNE_LOAD_PLUGINS"}
    proc = subprocess.run(
        [str(plugin_venv), "-m", "autotune.cli", "plugins", "--json"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    row, knob = knob_rows(json.loads(proc.stdout))["label_smoothing"]
    assert row["source"] == "entry point"
    assert row["name"] == "label_smoothing"
    assert row["module"] == "autotune_label_smoothing"
    assert row["version"] == "0.1.0"
    assert knob["kind"] == "statistical"


@pytest.mark.parametrize(("selection", "loaded"), [("", False), ("label_smoothing", True)])
def test_autotune_load_plugins_selects_installed_plugins(
    plugin_venv: Path, tmp_path: Path, selection: str, loaded: bool
) -> None:
    proc = run_process("plugins", "--json", python=plugin_venv, env={"AUTOTUNE_LOAD_PLUGINS": selection}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    knobs = knob_rows(json.loads(proc.stdout))
    assert ("label_smoothing" in knobs) is loaded
    assert BUILTIN_KNOBS <= set(knobs)


def test_installed_knob_trains(plugin_venv: Path, tmp_path: Path) -> None:
    proc = run_process(
        "trial", "run", "--set", "label_smoothing=0.1", "--budget-steps", "2", "--json",
        python=plugin_venv, env={"AUTOTUNE_LOAD_PLUGINS": "label_smoothing"}, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok"
    assert result["settings"]["label_smoothing"] == 0.1


# --- errors a user sees -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (("dup_a.py", "dup_b.py"), ["knob 'shared_knob'", "'dup_a'", "'dup_b'"]),
        (("raises_on_import.py",), ["raises_on_import.py", "RuntimeError: plugin import exploded"]),
        (("raises_in_register.py",), ["'raises_in_register'", "register_knobs", "register exploded"]),
        (("misspelt_hook.py",), ["'misspelt_hook'", "unknown hook 'register_knob'"]),
    ],
    ids=["duplicate-knob", "raises-on-import", "raises-in-register", "misspelt-hook"],
)
def test_plugin_errors_are_one_line_naming_the_plugin(files: tuple[str, ...], expected: list[str]) -> None:
    args = [arg for name in files for arg in ("--plugin", plugin_file(name))]
    proc = run_process("plugins", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = one_error_line(proc.stderr)
    for text in expected:
        assert text in line


def test_debug_shows_the_traceback() -> None:
    proc = run_process("--debug", "plugins", "--plugin", plugin_file("raises_in_register.py"))
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr
    assert "ValueError: register exploded" in proc.stderr  # the plugin's own frame and error


def test_misspelt_hook_fails_load_registry() -> None:
    with pytest.raises(PluginError, match=r"misspelt_hook.*unknown hook 'register_knob'"):
        load_registry(plugin_paths=[plugin_file("misspelt_hook.py")], entry_points=False)


def test_hook_with_wrong_argument_names_fails_load_registry(tmp_path: Path) -> None:
    path = tmp_path / "wrong_args.py"
    path.write_text("from autotune import hookimpl\n\n@hookimpl\ndef register_knobs(add):\n    pass\n")
    with pytest.raises(PluginError, match=r"wrong_args.*register_knobs"):
        load_registry(plugin_paths=[path], entry_points=False)


def test_disable_knob_turns_it_off() -> None:
    listed = invoke("plugins", "--json", "--disable-knob", "pruning")
    assert listed.exit_code == 0, listed.output
    row, knob = knob_rows(json.loads(listed.stdout))["pruning"]
    assert row["module"] == "autotune.plugins.training.pruning"
    assert knob.get("disabled") and "kind" not in knob

    text = invoke("plugins", "--disable-knob", "pruning")
    assert re.search(r"knob pruning\s+\(off: ", text.stdout), text.stdout

    ran = invoke("trial", "run", "--disable-knob", "pruning", "--set", "pruning=0.5", "--budget-steps", "1")
    assert ran.exit_code == 2
    line = one_error_line(ran.stderr)
    assert "pruning" in line and "off" in line


def test_disable_unknown_knob_is_a_usage_error() -> None:
    result = invoke("plugins", "--disable-knob", "nope")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "--disable-knob" in line and "'nope'" in line


# --- import cost ------------------------------------------------------------------------------
# Listing plugins must not pay for `import torch` (seconds): the built-ins import torch inside
# the functions that train. Fresh interpreters, so modules other tests imported hide nothing.


def test_loading_the_builtin_plugins_imports_neither_torch_nor_torchvision() -> None:
    code = (
        "import json, sys\n"
        "from autotune.registry import load_registry\n"
        "registry = load_registry(entry_points=False)\n"
        "print(json.dumps({'knobs': sorted(registry.knobs), 'workloads': sorted(registry.workloads),\n"
        "                  'modules': sorted({name.split('.')[0] for name in sys.modules})}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(out.stdout)
    assert set(loaded["knobs"]) == BUILTIN_KNOBS
    assert {"digits", "synthetic-resnet18"} <= set(loaded["workloads"])
    assert {"torch", "torchvision"} & set(loaded["modules"]) == set()


def test_plugins_command_imports_no_torch_module() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "autotune.cli", "plugins", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert BUILTIN_KNOBS <= set(knob_rows(json.loads(result.stdout)))
    # each line: "import time: <self us> | <cumulative us> | <indent><module>". The plugin modules
    # themselves are missing (importlib.import_module bypasses the logging), but every import
    # statement they run, `import torch` included, is listed.
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]
    assert {"autotune.registry", "autotune.home"} <= set(imported), "no -X importtime lines were parsed"
    roots = {name.split(".")[0] for name in imported}
    assert not {"torch", "torchvision"} & roots, sorted(n for n in imported if n.startswith("torch"))


# --- documentation --------------------------------------------------------------------------


def _hookspecs() -> dict[str, inspect.Signature]:
    specs = {
        name: inspect.signature(fn)
        for name, fn in vars(hookspecs).items()
        if callable(fn) and hasattr(fn, f"{hookspecs.hookspec.project_name}_spec")
    }
    assert specs, "found no hookspecs in autotune.hookspecs"
    return specs


def test_plugin_hooks_are_documented() -> None:
    headings = [line.lstrip("#").strip() for line in DOCS.read_text().splitlines() if line.startswith("#")]
    for name, signature in _hookspecs().items():
        call = f"{name}({', '.join(signature.parameters)})"
        assert any(call in heading for heading in headings), f"docs/plugins.md has no heading for {call}"


def test_loop_events_are_documented_with_their_arguments() -> None:
    from autotune.run.loop_events import ARGUMENTS, Event

    headings = [line.lstrip("#").strip() for line in DOCS.read_text().splitlines() if line.startswith("#")]
    assert set(ARGUMENTS) == set(Event)
    for event, names in ARGUMENTS.items():
        call = f"`Event.{event.name}`: `fn({', '.join(names)})"
        assert any(heading.startswith(call) for heading in headings), f"docs/plugins.md has no heading {call}"


EVENT_PROBE = '''
from autotune import Event, Knob, Param, hookimpl
from autotune.run.loop_events import ARGUMENTS


class Probe(Knob):
    name = "event_probe"
    help = "records every loop event, with the number of arguments it got"

    def params(self, hardware):
        return [Param("event_probe", "bool")]

    def baseline(self, hardware):
        return {"event_probe": True}

    def apply(self, settings, plan):
        seen = plan.notes.setdefault("events", [])

        def handler(event):
            def record(state, *args):
                assert len(args) + 1 == len(ARGUMENTS[event]), (event, args)
                if not seen or seen[-1] != event.value:
                    seen.append(event.value)
                return args[1](args[0]) if event is Event.STEP else None
            return record

        for event in Event:
            plan.on(event, handler(event))


@hookimpl
def register_knobs(register):
    register(Probe())
'''


def test_every_loop_event_fires_in_order_with_its_arguments(tmp_path: Path, digits_workload) -> None:  # noqa: ANN001
    from autotune.budget import Budget
    from autotune.hardware import detect
    from autotune.run import engine
    from autotune.settings import resolve_settings

    plugin = tmp_path / "event_probe.py"
    plugin.write_text(EVENT_PROBE)
    registry = load_registry(plugin_paths=[plugin], entry_points=False)
    hardware = detect("cpu")
    settings = resolve_settings(registry, hardware, digits_workload, {"batch_size": 512})
    steps_per_epoch = -(-1437 // 512)  # digits trains on 1,437 samples: 3 batches an epoch
    result = engine.run(digits_workload, settings, registry, hardware, Budget(steps=steps_per_epoch + 1),
                        device="cpu", options=engine.RunOptions(eval_every_steps=2))
    assert result.status == "ok", result.error
    assert result.notes["events"] == [
        "fit_start", "step", "after_step", "step", "after_step", "before_eval", "after_eval", "step", "after_step",
        "epoch_end", "step", "after_step", "before_eval", "after_eval", "fit_end",
    ]


def _doc_block(first_line: str) -> str:
    """The ```python block of docs/plugins.md that starts with `first_line`."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    assert found, f"docs/plugins.md has no python block starting {first_line!r}"
    return found[0]


LR_RECORDER = '''
from autotune import Event, Knob, Param, hookimpl


class LrRecorder(Knob):
    name = "lr_recorder"
    after = ("cosine_lr",)  # its handlers run after the schedule's

    def params(self, hardware):
        return [Param("lr_recorder", "bool")]

    def baseline(self, hardware):
        return {"lr_recorder": True}

    def apply(self, settings, plan):
        lrs = plan.notes.setdefault("lrs", [])
        plan.on(Event.AFTER_STEP, lambda state, loss: lrs.append(state.optimizer.param_groups[0]["lr"]))


@hookimpl
def register_knobs(register):
    register(LrRecorder())
'''


def test_the_documented_loop_knob_example_runs_as_written(tmp_path: Path, digits_workload) -> None:  # noqa: ANN001
    from autotune.budget import Budget
    from autotune.hardware import detect
    from autotune.run import engine
    from autotune.settings import resolve_settings

    (tmp_path / "cosine_lr.py").write_text(_doc_block("# cosine_lr.py"))
    (tmp_path / "lr_recorder.py").write_text(LR_RECORDER)
    # the recorder registers first: only `after` puts its handler behind the schedule's
    registry = load_registry(plugin_paths=[tmp_path / "lr_recorder.py", tmp_path / "cosine_lr.py"],
                             entry_points=False)
    hardware = detect("cpu")
    settings = resolve_settings(registry, hardware, digits_workload,
                                {"cosine_lr": True, "warmup_fraction": 0.2, "learning_rate": 0.1})
    result = engine.run(digits_workload, settings, registry, hardware, Budget(steps=10), device="cpu")
    assert result.status == "ok", result.error
    assert result.notes["cosine_lr"] == "warm-up 20% of the budget"
    lrs = result.notes["lrs"]
    assert len(lrs) == 10
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.1)  # warm-up: 1/2 then 2/2 of 0.2
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] == pytest.approx(1e-4)  # decayed


# --- errors at load --------------------------------------------------------------------------


def test_a_plugin_cycle_is_a_plugin_error_at_load(tmp_path: Path) -> None:
    plugin = tmp_path / "cycle.py"
    plugin.write_text(
        "from autotune import Knob, Param, hookimpl\n"
        "class K(Knob):\n"
        "    def __init__(self, name, after): self.name, self.after = name, after\n"
        "    def params(self, hardware): return [Param(self.name, 'bool')]\n"
        "    def baseline(self, hardware): return {self.name: False}\n"
        "    def apply(self, settings, plan): pass\n"
        "@hookimpl\n"
        "def register_knobs(register):\n"
        "    register(K('first', ('second',)))\n"
        "    register(K('second', ('first',)))\n"
    )
    with pytest.raises(PluginError, match="cycle: first -> second -> first"):
        load_registry(plugin_paths=[plugin], entry_points=False)


def test_10_a_plugin_that_calls_sys_exit_at_import_is_one_line_exit_2(cli_home: CliHome, tmp_path: Path) -> None:
    plugin = tmp_path / "exits.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    result = cli_home.run("plugins", "--plugin", str(plugin))
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "exits.py" in line and "sys.exit(3)" in line
