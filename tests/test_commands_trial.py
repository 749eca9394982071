"""`autotune trial run` (and friends) as a user runs them, training for real.

Real processes where the process is the point (the end-to-end run, exit codes, no traceback
leaking); click's CliRunner in-process for the many input checks, each of which would otherwise
pay ~2 s of `import torch`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from click.testing import CliRunner, Result

from autotune.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    # `tests.workloads_for_tests:...` must import in the child wherever pytest put sys.path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["AUTOTUNE_HOME"] = str(tmp / "home")
    return env


def autotune(*args: str, tmp: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m autotune.cli ARGS` from `tmp` (never from the repo root: see FACTS.md)."""
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args],
        cwd=tmp, env=cli_env(tmp), capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the CLI in-process (no ~2 s torch import per call), from tmp_path, like `autotune`."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOTUNE_HOME", str(tmp_path / "home"))

    def run(*args: str) -> Result:
        result = CliRunner().invoke(cli, list(args))
        # None on success; click turns every other exit into SystemExit: anything else escaped
        # the CLI's error handling and would be a traceback for a user
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


def one_error_line(stderr: str) -> str:
    """The single `autotune: error: ...` line that is all of stderr."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotune: error:"), stderr
    return lines[0]


# --- the end-to-end run ----------------------------------------------------------------------

NUMBERS = (
    "throughput", "val_accuracy", "val_loss", "peak_memory_bytes", "step_time_p50",
    "step_time_p95", "data_wait_fraction", "nonzero_fraction", "wall_time",
)


def test_trial_run_digits_bf16_json(tmp_path: Path) -> None:
    proc = autotune(
        "trial", "run", "--workload", "digits", "--set", "batch_size=128", "--set", "precision=bf16",
        "--budget-epochs", "3", "--json", tmp=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # one JSON object and nothing else on stdout
    assert isinstance(data, dict)
    for key in NUMBERS:
        value = data[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value), (key, value)
    assert data["status"] == "ok"
    assert data["error"] is None
    assert data["settings"]["batch_size"] == 128 and data["settings"]["precision"] == "bf16"
    assert data["throughput"] > 0
    assert 0 <= data["data_wait_fraction"] <= 1
    assert 0 < data["step_time_p50"] <= data["step_time_p95"]
    assert data["peak_memory_bytes"] > 0
    assert data["nonzero_fraction"] == 1.0
    assert data["wall_time"] >= data["train_time"] > 0
    assert data["epochs"] == 3.0 and len(data["curve"]) == 3
    # measured: 0.877 with seed 0 (the same on every run here)
    assert data["val_accuracy"] >= 0.85
    assert data["workload"] == "digits"


# --- bad input: exit 2, one line naming the problem ------------------------------------------

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

# (case id, arguments after `trial run`, fragments the error line must contain)
BAD_INPUT: list[tuple[str, list[str], list[str]]] = [
    ("unknown-workload", ["--workload", "nope"], ["unknown workload 'nope'", "digits"]),
    ("unknown-setting", ["--set", "nope=1"], ["unknown setting 'nope'", "batch_size"]),
    ("wrong-type", ["--set", "batch_size=abc"], ["batch_size", "'abc'", "integer"]),
    ("out-of-range", ["--set", "batch_size=0"], ["batch_size", "0", "range"]),
    ("choice-not-accepted", ["--set", "optimizer=lbfgs"], ["optimizer", "lbfgs", "sgd"]),
    ("malformed-set", ["--set", "batch_size"], ["KEY=VALUE"]),
    ("zero-budget", ["--budget-epochs", "0"], ["budget epochs", "positive"]),
    ("negative-budget", ["--budget-seconds", "-1"], ["budget seconds", "positive"]),
    ("nan-budget", ["--budget-seconds", "nan"], ["budget seconds", "positive"]),
    ("two-budgets", ["--budget-epochs", "1", "--budget-steps", "5"], ["exactly one budget"]),
    ("import-fails", ["--workload", "no_such_pkg.mod:fn"], ["no_such_pkg.mod:fn", "No module named"]),
    ("import-no-function", ["--workload", "tests.workloads_for_tests:no_such_function"],
     ["no_such_function"]),
    ("condition-fails", ["--set", "optimizer=adam", "--set", "momentum=0.5"],
     ["momentum", "only when optimizer is sgd"]),
    ("no-such-config", ["--config", "missing.toml"], ["missing.toml", "cannot read"]),
    ("no-cuda", ["--device", "cuda"], ["--device cuda", "not available"]),
]
SPENDS_BUDGET = {"zero-budget", "negative-budget", "nan-budget", "two-budgets"}


def bad_args(name: str, args: list[str]) -> list[str]:
    # A short budget, so a case that wrongly starts training ends quickly and fails.
    return ["trial", "run", *args, *([] if name in SPENDS_BUDGET else ["--budget-steps", "1"])]


@pytest.mark.parametrize(
    "name, args, fragments",
    [pytest.param(*case, id=case[0], marks=[NO_CUDA] if case[0] == "no-cuda" else []) for case in BAD_INPUT],
)
def test_bad_input_is_one_line_and_exit_2(
    name: str, args: list[str], fragments: list[str], invoke: Callable[..., Result]
) -> None:
    # In-process (a process per case costs ~2 s of torch import); the test below runs some of
    # them as real processes.
    result = invoke(*bad_args(name, args))
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    line = one_error_line(result.stderr)
    assert all(fragment in line for fragment in fragments), line
    assert result.stdout == ""


@pytest.mark.parametrize("name", ["unknown-workload", "wrong-type"])
def test_bad_input_in_a_real_process(name: str, tmp_path: Path) -> None:
    _, args, fragments = next(case for case in BAD_INPUT if case[0] == name)
    proc = autotune(*bad_args(name, args), tmp=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_error_line(proc.stderr)
    assert all(fragment in line for fragment in fragments), line
    assert proc.stdout == ""


# --- a run that fails: exit 1 -----------------------------------------------------------------

FAILURE = "deliberate failure in forward from tests.workloads_for_tests"


def test_failing_workload_exits_1_with_the_message(tmp_path: Path) -> None:
    proc = autotune("trial", "run", "--workload", "tests.workloads_for_tests:failing_forward",
                    "--budget-steps", "2", tmp=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failures = [line for line in proc.stderr.splitlines() if line.startswith("autotune: run failed:")]
    assert len(failures) == 1, proc.stderr
    assert FAILURE in failures[0]
    assert proc.stdout.split()[:2] == ["status", "failed"]


def test_failing_workload_json_has_status_and_error(invoke: Callable[..., Result]) -> None:
    result = invoke("trial", "run", "--workload", "tests.workloads_for_tests:failing_forward",
                    "--budget-steps", "2", "--json")
    assert result.exit_code == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "failed"
    assert FAILURE in data["error"]
    assert "traceback" not in data


# --- config files ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["toml", "json"])
def test_config_file_applies_and_set_wins(tmp_path: Path, suffix: str, invoke: Callable[..., Result]) -> None:
    config = tmp_path / f"trial.{suffix}"
    if suffix == "toml":
        config.write_text(
            'workload = "tests.workloads_for_tests:tiny"\n\n'
            "[settings]\nbatch_size = 16\noptimizer = \"adam\"\nweight_decay = 0.01\nthreads = 1\n"
        )
    else:  # the flat form
        config.write_text(json.dumps({
            "workload": "tests.workloads_for_tests:tiny",
            "batch_size": 16, "optimizer": "adam", "weight_decay": 0.01, "threads": 1,
        }))
    result = invoke("trial", "run", "--config", str(config), "--set", "batch_size=32",
                    "--budget-steps", "3", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "ok", data["error"]
    assert data["workload"] == "tests.workloads_for_tests:tiny"
    settings = data["settings"]
    assert settings["batch_size"] == 32  # --set wins over the file
    assert settings["optimizer"] == "adam" and settings["weight_decay"] == 0.01
    assert "momentum" not in settings  # inactive under adam
    assert data["samples"] == 3 * 32


# --- other commands -------------------------------------------------------------------------


def test_hardware_json(tmp_path: Path) -> None:
    proc = autotune("hardware", "--json", "--device", "cpu", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["device_type"] == "cpu"
    assert "fp32" in data["precisions"]
    assert data["cpu_count"] >= 1


def test_help_explains_commands_and_options(tmp_path: Path) -> None:
    top = autotune("--help", tmp=tmp_path)
    assert top.returncode == 0, top.stderr
    assert "trial" in top.stdout and "hardware" in top.stdout

    proc = autotune("trial", "run", "--help", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--workload", "--set", "--config", "--budget-epochs", "--budget-steps",
                   "--budget-seconds", "--device", "--seed", "--target", "--json", "--data-dir",
                   "--download"):
        assert option in proc.stdout, option
    assert "KEY=VALUE" in proc.stdout
