"""Data-parallel trials with DistributedDataParallel: real processes, a real gloo process group.

The `data_parallel=ddp` path is the same on CPU and CUDA except for the backend and the devices, so
these run it on CPU with two processes: from the CLI as a user would, and through the trial
process a study uses (which then starts the two processes itself). The probe plugin
(tests/plugin_files/ddp_probe.py) reports from inside each process what it saw.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from autotune.run import engine
from autotune.settings import resolve_settings
from autotune.hardware import Hardware
from autotune.registry import Registry
from autotune.launch.requests import TrainingRequest
from autotune.launch.trial_process import launch
from autotune.workloads import Workload, load_workload

ROOT = Path(__file__).resolve().parents[1]
PROBE = str(ROOT / "tests" / "plugin_files" / "ddp_probe.py")
DDP = {"data_parallel": "ddp", "data_parallel_processes": 2, "batch_size": 64}

needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="ddp on CPU needs 2+ cores")


def records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads((directory / f"rank{r}.json").read_text()) for r in (0, 1)]


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether `pid` has exited (a zombie waiting for its reaper counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def request(tmp_path: Path, budget: dict[str, Any], **overrides: Any) -> TrainingRequest:
    return TrainingRequest(
        workload="digits", overrides={**DDP, **overrides}, budget=budget, plugin_paths=(PROBE,),
        log_path=str(tmp_path / "trial.log"),
        env={"DDP_PROBE_DIR": str(tmp_path)},  # the trial process's, and so its ranks'
    )


@needs_two_cores
def test_ddp_trains_in_two_processes_that_stay_in_step(tmp_path: Path, digits_workload: Workload) -> None:
    env = dict(os.environ, AUTOTUNE_HOME=str(tmp_path / "home"), DDP_PROBE_DIR=str(tmp_path))
    sets = [arg for key, value in DDP.items() for arg in ("--set", f"{key}={value}")]
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "trial", "run", "--workload", "digits", "--plugin", PROBE,
         *sets, "--budget-epochs", "2", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # stdout is the JSON answer and nothing else
    assert result["status"] == "ok", result["error"]
    assert result["settings"]["data_parallel"] == "ddp"
    assert "data-parallel run: 2 processes (gloo)" in proc.stderr

    first, second = records(tmp_path)
    for rank, record in enumerate((first, second)):
        assert record["rank"] == rank
        assert record["world_size"] == record["group_size"] == 2 and record["backend"] == "gloo"
        assert record["wrapper"] == "DistributedDataParallel"
        assert record["batch"] == 32  # the global batch of 64, split
    assert first["pid"] != second["pid"]
    # each process trained on its own shard, yet the weights ended identical: the gradients
    # were averaged between them at every step
    assert first["first_batch"] != second["first_batch"]
    assert first["param_sum"] == pytest.approx(second["param_sum"], rel=1e-9)
    # throughput and sample counts are global: both processes' samples
    assert result["epochs"] == pytest.approx(2.0)
    per_process = -(-len(digits_workload.train_data) // 2)  # DistributedSampler pads to equal shards
    assert result["samples"] == 2 * 2 * per_process
    assert result["throughput"] > 0 and result["train_time"] < result["wall_time"]
    assert result["val_accuracy"] > 0.5, result["curve"]


@needs_two_cores
@pytest.mark.parametrize("scenario", ["pruned", "seconds", "raise", "exit"])
def test_ddp_in_a_trial_process(scenario: str, tmp_path: Path) -> None:
    """What a study sees: stops agreed by both processes, and one clear line when one fails."""
    budget = {"seconds": 1.0} if scenario == "seconds" else {"epochs": 3}
    overrides = {"ddp_probe": scenario} if scenario in ("raise", "exit") else {}
    evals: list[dict[str, Any]] = []

    def on_eval(point: dict[str, Any]) -> bool:
        evals.append(point)
        return scenario == "pruned"

    started = time.monotonic()
    outcome = launch(request(tmp_path, budget, **overrides), on_eval=on_eval)
    assert time.monotonic() - started < 120

    if scenario == "pruned":
        assert outcome.status == "pruned", outcome.error
        assert len(evals) == 1 and len(outcome.result["curve"]) == 1
        assert outcome.result["steps"] == evals[0]["step"]
    elif scenario == "seconds":
        assert outcome.status == "ok", outcome.error
        assert outcome.result["train_time"] >= 1.0
        first, second = records(tmp_path)  # both ended normally, each ran its cleanups
        assert first["param_sum"] == pytest.approx(second["param_sum"], rel=1e-9)
    else:
        assert outcome.status == "failed"
        expected = "deliberate failure" if scenario == "raise" else "exited with code 3"
        assert outcome.error.startswith("process 1 of 2: ") and expected in outcome.error, outcome.error
    for rank in (0, 1):  # the process left waiting for its peer was not left behind
        assert wait_gone(int((tmp_path / f"pid{rank}").read_text()))


@needs_two_cores
def test_killing_a_ddp_trial_takes_its_processes_with_it(tmp_path: Path) -> None:
    progress: list[dict[str, Any]] = []
    outcome = launch(
        request(tmp_path, {"epochs": 200}), on_progress=progress.append,
        should_kill=lambda: "stopped by the test" if progress else None,
    )
    assert outcome.status == "killed" and outcome.error == "stopped by the test"
    assert progress[0]["samples_per_s"] > 0
    for rank in (0, 1):
        assert wait_gone(int((tmp_path / f"pid{rank}").read_text()))


@needs_two_cores
def test_ddp_needs_a_workload_it_can_build_again(registry: Registry, hardware: Hardware) -> None:
    loaded = load_workload("digits", registry)
    assert loaded.origin == {"spec": "digits", "data_dir": None, "workdir": None}
    changed = dataclasses.replace(loaded, description="changed in code")
    assert changed.origin is None  # a changed copy is not what "digits" builds
    settings = resolve_settings(registry, hardware, changed, DDP)
    result = engine.run(changed, settings, registry, hardware, engine.Budget(steps=2), device="cpu")
    assert result.status == "unsupported"
    assert "built in code, not loaded by name" in result.error
