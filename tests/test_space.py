"""Search spaces: bundled files, validation messages, suggestions with a real Optuna study, CLI."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from autotune.cli import cli
from autotune.settings import resolve_settings
from autotune.errors import SpaceError
from autotune.registry import load_registry
from autotune.knob import exclusion
from autotune.space import load_space
from autotune.space_files import bundled_names

ROOT = Path(__file__).resolve().parents[1]

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="session")
def cuda(hardware):
    """A CUDA fingerprint (no GPU needed: spaces only read device type and precisions)."""
    return dataclasses.replace(hardware, device_type="cuda", precisions=("fp32", "bf16", "fp16"))


def pins(registry, hardware) -> dict:
    """What every space pins on this machine: knobs whose default space is a single value."""
    return {
        p.name: p.choices[0]
        for k in registry.knobs.values() if not exclusion(k, hardware)
        for p in k.params(hardware) if p.choices is not None and len(p.choices) == 1
    }


def write(tmp_path: Path, text: str, name: str = "space.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def space_error(path: str, registry, hardware) -> str:
    with pytest.raises(SpaceError) as info:
        load_space(path, registry, hardware)
    message = str(info.value)
    assert "\n" not in message
    return message


def sample(space, n_trials: int = 30) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: list[dict] = []

    def objective(trial):
        seen.append(space.suggest(trial))
        return 0.0

    study.optimize(objective, n_trials=n_trials)
    return seen


# --- bundled spaces ---------------------------------------------------------------------------


def test_bundled_names():
    assert bundled_names() == ["cpu", "default", "demo", "gpu", "quick"]


@pytest.mark.parametrize("name", ["default", "cpu", "gpu", "quick", "demo"])
def test_bundled_space_loads_and_resolves_on_cpu(name, registry, hardware, digits_workload):
    space = load_space(name, registry, hardware)
    assert space.source == f"bundled:{name}"
    assert space.excluded["cudnn_benchmark"] == "needs CUDA (this machine trains on cpu)"
    assert "cudnn_benchmark" not in {p.name for p in space.params}
    for values in sample(space, n_trials=5):
        # Every suggestion is a valid run configuration.
        resolve_settings(registry, hardware, digits_workload, values)


def test_none_means_default(registry, hardware):
    space = load_space(None, registry, hardware)
    assert space.name == "default"
    # Every available knob keeps its own default space. A one-value choice is a pin: ddp is
    # accepted but not searched on CPU, so data_parallel is pinned to "none" and its process
    # count, which only ddp uses, is left out.
    defaults = [p for k in registry.knobs.values() if not exclusion(k, hardware) for p in k.params(hardware)]
    assert space.params == [p for p in defaults if not p.name.startswith("data_parallel")]
    assert space.fixed == {"data_parallel": "none"}


def test_cpu_space(registry, hardware):
    space = load_space("cpu", registry, hardware)
    params = {p.name: p for p in space.params}
    assert (params["batch_size"].low, params["batch_size"].high, params["batch_size"].log) == (16, 512, True)
    assert params["precision"].choices == ("fp32", "bf16")
    assert space.excluded["torch_compile"] == "left out by the space"


def test_gpu_space_on_cuda(registry, cuda):
    space = load_space("gpu", registry, cuda)
    params = {p.name: p for p in space.params}
    assert params["precision"].choices == ("fp32", "bf16", "fp16")
    assert (params["batch_size"].low, params["batch_size"].high) == (32, 1024)
    assert {"channels_last", "cudnn_benchmark", "torch_compile"} <= params.keys()
    assert "cudnn_benchmark" not in space.excluded


def test_quick_space(registry, hardware):
    space = load_space("quick", registry, hardware)
    searched = [p.name for p in space.params]
    assert searched == [
        "batch_size", "optimizer", "momentum", "weight_decay", "beta2", "learning_rate", "workers", "precision"
    ]
    for knob in ("pruning", "channels_last", "torch_compile", "threads"):
        assert space.excluded[knob] == "not in this space's `only` list"
    params = {p.name: p for p in space.params}
    assert params["optimizer"].choices == ("sgd", "adam", "adamw")
    assert (params["workers"].low, params["workers"].high) == (0, 2)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[knobs.batch_sise]\nlow = 8\n",
         "knob 'batch_sise': not a known knob (known: batch_size, optimizer, learning_rate, workers, "
         "precision, pruning, structured_pruning, channels_last, cudnn_benchmark, torch_compile, threads, "
         "data_parallel, lr_schedule, optimizer_impl, matmul_precision, activation_checkpointing, micro_batches)"),
        ("[knobs.batch_size]\nlo = 8\n",
         "knob 'batch_size': unknown key 'lo' (accepted: low, high, log, step, choices, fixed, search)"),
        ("[knobs.batch_size]\nlow = 512\nhigh = 64\n", "knob 'batch_size': low (512) > high (64)"),
        ("[knobs.workers]\nlog = true\n", "knob 'workers': log scale needs bounds > 0, got low (0)"),
        ("[knobs.precision]\nchoices = ['fp32', 'fp8']\n",
         "knob 'precision': choice 'fp8' is not accepted (accepted: fp32, bf16, fp16)"),
        ("[knobs.batch_size]\nlow = 0\n", "knob 'batch_size': low (0) is below the valid minimum 1"),
        ("[knobs.pruning]\nhigh = 1.5\n", "knob 'pruning': high (1.5) is above the valid maximum 0.99"),
        ("[knobs.pruning]\nfixed = 'lots'\n", "knob 'pruning': fixed = 'lots': expected a number, got 'lots'"),
        ("[knobs.precision]\nfixed = 'fp8'\n", "knob 'precision': fixed = 'fp8': 'fp8' is not one of fp32, bf16, fp16"),
        ("[knobs.batch_size]\nlow = 16.5\n", "knob 'batch_size': low must be an integer, got 16.5"),
        ("[knobs.precision]\nlow = 1\n", "knob 'precision': 'precision' is categorical: use choices, not low"),
        ("[knobs.pruning]\nfixed = 0.0\nhigh = 0.5\n", "knob 'pruning': fixed cannot be combined with high"),
        ("[knobs.batch_size]\nstep = 16\n", "knob 'batch_size': log and step cannot be combined (set log = false)"),
        ("[knobs.channels_last]\nsearch = 'no'\n", "knob 'channels_last': search must be true or false, got 'no'"),
        ("[knobs.optimizer.momentum]\nlow = 0.99\nhigh = 0.5\n",
         "knob 'optimizer': setting 'momentum': low (0.99) > high (0.5)"),
        ("[knobs.optimizer.nesterov]\nfixed = true\n",
         "knob 'optimizer': unknown key 'nesterov' (accepted: low, high, log, step, choices, fixed, search; "
         "sub-settings: momentum, weight_decay, beta2)"),
        ("only = ['batch_size', 'lr']\n",
         "knob 'lr': listed in `only` but not a known knob (known: batch_size, optimizer, learning_rate, "
         "workers, precision, pruning, structured_pruning, channels_last, cudnn_benchmark, torch_compile, threads, "
         "data_parallel, lr_schedule, optimizer_impl, matmul_precision, activation_checkpointing, micro_batches)"),
        ("serach = 1\n", "unknown top-level key 'serach' (accepted: extends, only, description, knobs)"),
        # A knob that does not apply here is excluded, but its typos still fail.
        ("[knobs.cudnn_benchmark]\nchoices = [false, 'maybe']\n",
         "knob 'cudnn_benchmark': choice 'maybe' is not accepted (accepted: false, true)"),
    ],
)
def test_validation_message(tmp_path, registry, hardware, text, problem):
    path = write(tmp_path, text)
    assert space_error(path, registry, hardware) == f"{path}: {problem}"


def test_malformed_toml_names_the_line(tmp_path, registry, hardware):
    path = write(tmp_path, "[knobs.batch_size]\nlow = = 3\n")
    message = space_error(path, registry, hardware)
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "(at line 2, column" in message


def test_missing_file_and_unknown_bundled_name(tmp_path, registry, hardware):
    missing = str(tmp_path / "nope.toml")
    assert space_error(missing, registry, hardware) == f"search space {missing}: file not found"
    message = space_error("fastest", registry, hardware)
    assert message.startswith("unknown search space 'fastest' (bundled: cpu, default, demo, gpu, quick;")


def test_unavailable_knob_in_space_is_excluded_not_an_error(tmp_path, registry, hardware):
    path = write(tmp_path, "[knobs.cudnn_benchmark]\nfixed = true\n")
    space = load_space(path, registry, hardware)
    assert space.excluded["cudnn_benchmark"] == "needs CUDA (this machine trains on cpu)"
    assert "cudnn_benchmark" not in space.fixed


def test_disabled_knob_is_excluded(tmp_path, hardware):
    registry = load_registry(entry_points=False, disabled_knobs=["pruning"])
    path = write(tmp_path, "[knobs.pruning]\nhigh = 0.3\n")
    space = load_space(path, registry, hardware)
    assert space.excluded["pruning"] == "disabled by --disable-knob"
    assert "pruning" not in {p.name for p in space.params}


# --- suggest ------------------------------------------------------------------------------


def test_suggest_stays_inside_overrides(tmp_path, registry, hardware, digits_workload):
    path = write(tmp_path, """
[knobs.batch_size]
low = 32
high = 128
log = true
[knobs.optimizer]
choices = ["sgd", "adam"]
[knobs.optimizer.momentum]
low = 0.5
high = 0.9
[knobs.learning_rate]
low = 0.001
high = 0.01
[knobs.pruning]
fixed = 0.0
[knobs.threads]
choices = [1, 2]
""")
    space = load_space(path, registry, hardware)
    distributions = space.distributions()
    assert list(distributions) == [p.name for p in space.params]
    assert "pruning" not in distributions
    seen = sample(space)
    assert len(seen) == 30
    for values in seen:
        assert values["pruning"] == 0.0
        assert 32 <= values["batch_size"] <= 128 and isinstance(values["batch_size"], int)
        assert 0.001 <= values["learning_rate"] <= 0.01
        assert values["threads"] in (1, 2)
        assert values["optimizer"] in ("sgd", "adam")
        # Conditional params appear exactly when their condition holds.
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        assert ("weight_decay" in values) == (values["optimizer"] == "adam")
        if "momentum" in values:
            assert 0.5 <= values["momentum"] <= 0.9
        for name, value in values.items():
            if name in distributions:
                dist = distributions[name]
                assert dist._contains(dist.to_internal_repr(value))
        resolve_settings(registry, hardware, digits_workload, values)
    assert {v["optimizer"] for v in seen} == {"sgd", "adam"}


def test_fixed_sub_setting_follows_its_condition(tmp_path, registry, hardware):
    path = write(tmp_path, """
only = ["optimizer"]
[knobs.optimizer]
choices = ["sgd", "adamw"]
[knobs.optimizer.momentum]
fixed = 0.9
""")
    space = load_space(path, registry, hardware)
    assert space.fixed == {"momentum": 0.9}
    for values in sample(space, n_trials=20):
        assert ("momentum" in values) == (values["optimizer"] == "sgd")
        if values["optimizer"] == "sgd":
            assert values["momentum"] == 0.9


def test_unreachable_sub_settings_are_left_out(tmp_path, registry, hardware):
    path = write(tmp_path, "[knobs.optimizer]\nfixed = 'adam'\n")
    space = load_space(path, registry, hardware)
    names = [p.name for p in space.params]
    assert "momentum" not in names
    assert {"weight_decay", "beta2"} <= set(names)
    assert space.fixed == {"optimizer": "adam", **pins(registry, hardware)}
    values = sample(space, n_trials=3)[0]
    assert values["optimizer"] == "adam" and "weight_decay" in values


def test_numeric_choices_become_categorical(tmp_path, registry, hardware):
    path = write(tmp_path, "only = ['batch_size']\n[knobs.batch_size]\nchoices = [32, 64, 128]\n")
    space = load_space(path, registry, hardware)
    (param,) = space.params
    assert (param.type, param.choices) == ("categorical", (32, 64, 128))
    assert {v["batch_size"] for v in sample(space, n_trials=20)} <= {32, 64, 128}


# --- extends ------------------------------------------------------------------------------


def test_extends_bundled(tmp_path, registry, hardware):
    path = write(tmp_path, 'extends = "quick"\n[knobs.batch_size]\nhigh = 128\n')
    space = load_space(path, registry, hardware)
    params = {p.name: p for p in space.params}
    assert (params["batch_size"].low, params["batch_size"].high, params["batch_size"].log) == (32, 128, True)
    assert params["precision"].choices == ("fp32", "bf16")  # inherited
    assert space.excluded["pruning"] == "not in this space's `only` list"  # `only` inherited
    assert space.source == path and space.name == "space"


def test_extends_relative_path_merges_key_by_key(tmp_path, registry, hardware):
    (tmp_path / "base").mkdir()
    write(tmp_path, "[knobs.batch_size]\nlow = 1000\nhigh = 2000\n[knobs.pruning]\nhigh = 0.5\n",
          "base/parent.toml")
    path = write(tmp_path, 'extends = "base/parent.toml"\n[knobs.batch_size]\nlow = 1500\n'
                           "[knobs.pruning]\nfixed = 0.1\n")
    space = load_space(path, registry, hardware)
    params = {p.name: p for p in space.params}
    # low = 1500 alone would exceed the default high (512); merged with the parent it is fine.
    assert (params["batch_size"].low, params["batch_size"].high) == (1500, 2000)
    # The child's pin replaces the parent's range instead of conflicting with it.
    assert space.fixed == {"pruning": 0.1, **pins(registry, hardware)}


def test_extends_conflict_names_the_child(tmp_path, registry, hardware):
    write(tmp_path, "[knobs.batch_size]\nlow = 32\n", "parent.toml")
    path = write(tmp_path, 'extends = "parent.toml"\n[knobs.batch_size]\nhigh = 16\n')
    assert space_error(path, registry, hardware) == f"{path}: knob 'batch_size': low (32) > high (16)"


def test_extends_error_names_the_parent(tmp_path, registry, hardware):
    parent = write(tmp_path, "[knobs.batch_size]\nlow = 'big'\n", "parent.toml")
    path = write(tmp_path, 'extends = "parent.toml"\n')
    assert space_error(path, registry, hardware) == f"{parent}: knob 'batch_size': low must be a number, got 'big'"


def test_extends_unknown_bundled_name(tmp_path, registry, hardware):
    path = write(tmp_path, 'extends = "fast"\n')
    assert space_error(path, registry, hardware).startswith(f"{path}: extends: unknown search space 'fast'")


def test_extends_cycle(tmp_path, registry, hardware):
    a = write(tmp_path, 'extends = "b.toml"\n', "a.toml")
    b = str(tmp_path / "b.toml")
    write(tmp_path, 'extends = "a.toml"\n', "b.toml")
    assert space_error(a, registry, hardware) == f"{b}: extends cycle: {a} -> {b} -> {a}"


# --- output and CLI -------------------------------------------------------------------------


def test_to_dict_and_describe(registry, hardware):
    space = load_space("quick", registry, hardware)
    data = json.loads(json.dumps(space.to_dict()))
    momentum = next(p for p in data["params"] if p["name"] == "momentum")
    assert momentum == {"name": "momentum", "knob": "optimizer", "type": "float", "low": 0.0, "high": 0.95,
                        "log": False, "step": None, "choices": None, "when": {"optimizer": ["sgd", "rmsprop"]}}
    text = space.describe()
    assert "when optimizer in (sgd, rmsprop)" in text
    # names are padded to the longest excluded one
    assert re.search(r"\n  cudnn_benchmark +needs CUDA \(this machine trains on cpu\)\n", text)


def test_cli_space_show_json():
    result = CliRunner().invoke(cli, ["space", "show", "quick", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "quick"
    assert [p["name"] for p in data["params"]][:2] == ["batch_size", "optimizer"]
    assert data["excluded"]["threads"] == "not in this space's `only` list"


def test_cli_bad_space_is_one_line_exit_2(tmp_path):
    path = write(tmp_path, "[knobs.batch_size]\nlow = 512\nhigh = 64\n", "bad.toml")
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "space", "show", path, "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"autotune: error: {path}: knob 'batch_size': low (512) > high (64)"]
    assert proc.stdout == ""


def test_space_show_for_a_workload_names_what_it_leaves_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    shown = CliRunner().invoke(cli, ["space", "show", "--workload", "tests.workloads_for_tests:regression"])
    assert shown.exit_code == 0, shown.output
    assert any(line.split() == ["channels_last", "the", "workload's", "model", "has", "no", "convolutions"]
               for line in shown.output.splitlines())
    plain = CliRunner().invoke(cli, ["space", "show"])
    assert any(line.split()[:2] == ["channels_last", "bool"] for line in plain.output.splitlines())  # searched
