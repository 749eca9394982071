"""Sharing a machine's GPUs between trials: the pool, what each runner builds from its options,
and the hardware a study describes and searches when each trial sees only its own GPUs.

The pool is pure Python and the rest needs only a CUDA-shaped fingerprint, so none of this needs
a GPU; the trials that do train on GPUs are in tests/test_run_distributed.py (marked `gpu`).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from autotune.devices import DevicePool, trial_pool, visible_gpus
from autotune.errors import UsageError
from autotune.hardware import Hardware
from autotune.spec import StudySpec


def test_device_pool_hands_out_gpus_and_takes_them_back():
    pool = DevicePool(range(4))
    assert pool.slots == 4 and pool.per_trial == 1
    taken = [pool.acquire(timeout=0) for _ in range(4)]
    assert taken == [(0,), (1,), (2,), (3,)]
    assert pool.acquire(timeout=0.05) is None  # exhausted
    pool.release((2,))
    assert pool.acquire(timeout=0) == (2,)
    for t in taken:
        pool.release(t)
    with pytest.raises(ValueError, match="released twice"):
        pool.release((0,))
    with pytest.raises(ValueError, match="does not belong"):
        pool.release((7,))

    pairs = DevicePool([0, 1, 2, 3, 4], per_trial=2)
    assert pairs.slots == 2
    with pairs.lease() as env, pairs.lease() as env2:
        assert env == {"CUDA_VISIBLE_DEVICES": "0,1"} and env2 == {"CUDA_VISIBLE_DEVICES": "2,3"}
        assert pairs.acquire(timeout=0.05) is None  # one GPU left, a trial needs two
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(pairs.acquire(timeout=10)))
        waiter.start()
    waiter.join(10)  # leaving the leases freed four GPUs: the waiting trial got two
    assert got == [(0, 1)]
    assert sorted(pairs.free) == [2, 3, 4]

    with pytest.raises(UsageError, match="--gpus-per-trial 3: only 2 GPU"):
        DevicePool([0, 1], per_trial=3)
    with pytest.raises(UsageError, match="at least 1"):
        DevicePool([0, 1], per_trial=0)


def test_visible_gpus_respects_an_existing_restriction():
    assert visible_gpus(2) == (0, 1)
    assert visible_gpus(2, "4,6") == (4, 6)
    assert visible_gpus(1, "GPU-aaaa,GPU-bbbb") == ("GPU-aaaa",)
    assert visible_gpus(3, "1,-1,2") == (1,)  # CUDA ignores everything after an invalid index


def test_trial_pool_gives_one_trial_per_gpu_group_by_default():
    pool, workers = trial_pool(4, None, None)
    assert pool is not None and pool.per_trial == 1 and workers == 4
    pool, workers = trial_pool(4, None, 2)
    assert pool.per_trial == 2 and workers == 2
    pool, workers = trial_pool(4, 1, 2, "4,5,6,7")
    assert pool.indices == (4, 5, 6, 7) and workers == 1
    with pytest.raises(UsageError, match="--workers 3: 4 GPU\\(s\\) at 2 per trial fit only 2"):
        trial_pool(4, 3, 2)
    with pytest.raises(UsageError, match="--gpus-per-trial 8: only 4 GPU"):
        trial_pool(4, None, 8)
    assert trial_pool(0, None, None) == (None, 1)
    assert trial_pool(0, 3, None) == (None, 3)
    with pytest.raises(UsageError, match="--gpus-per-trial 2: no CUDA GPUs here"):
        trial_pool(0, None, 2)


def cuda_machine(hardware: Hardware, gpus: int) -> Hardware:
    return dataclasses.replace(
        hardware, device_type="cuda", device_name="a test GPU", device_count=gpus,
        precisions=("fp32", "bf16", "fp16"),
    )


@pytest.mark.parametrize(("per_trial", "data_parallel"), [(1, None), (2, ("none", "ddp", "dp"))])
def test_a_study_searches_what_one_trial_can_use(per_trial, data_parallel, hardware, tmp_path, monkeypatch):
    """On 4 GPUs with one per trial, data_parallel cannot run in a trial: it must not be searched
    (it was, in the daemon, and every such trial failed as unsupported). With 2 per trial it is."""
    from autotune.study.prepare import fit_to_devices, prepare

    monkeypatch.setenv("AUTOTUNE_HOME", str(tmp_path))
    spec = StudySpec(name="gpus", workload="digits", space="gpu", storage=f"sqlite:///{tmp_path / 's.db'}")
    prepared = prepare(spec, check_hardware=None)
    prepared.hardware = cuda_machine(hardware, 4)
    fit_to_devices(prepared, DevicePool(range(4), per_trial=per_trial))
    assert prepared.hardware.device_count == per_trial  # what the study records and shows
    # searched, or fitted after the search (a systems knob of a staged study)
    params = {p.name: p for p in [*prepared.space.params, *prepared.space.fitted]}
    if data_parallel is None:
        assert "data_parallel" not in params
        assert prepared.space.excluded["data_parallel"] == "needs 2+ CUDA GPUs for this trial"
    else:
        assert params["data_parallel"].choices == data_parallel


def test_daemon_gpus_per_trial_needs_gpus(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "daemon", "start", "--foreground", "--gpus-per-trial", "2"],
        env={**os.environ, "AUTOTUNE_HOME": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "autotune: error: --gpus-per-trial 2: no CUDA GPUs here"
    from autotune.daemon.files import DaemonPaths, running_pid

    assert running_pid(DaemonPaths(tmp_path)) is None
