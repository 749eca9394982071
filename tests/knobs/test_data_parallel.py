"""data_parallel: where it is available, and what its launching and per-process passes plan; DDP
training in real processes is tests/test_run_distributed.py's, on two GPUs `gpu`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest
import torch

from autotune.errors import UsageError
from autotune.hardware import Hardware
from autotune.knob import exclusion
from autotune.registry import Registry
from autotune.run.local import build_plan
from autotune.run.plan import Rank

from knob_case import CPU, Case


@pytest.mark.parametrize("name", ["data_parallel"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    if case.hardware.cpu_count < 2:
        assert exclusion(case.knob, case.hardware) == "needs 2+ CPU cores"
        return
    assert case.base_value == "none"
    assert case.baseline.result.settings["data_parallel"] == "none"
    base = case.plan()
    assert base.processes == 1 and "data_parallel" not in base.notes
    with pytest.raises(UsageError, match="not one of"):
        case.settings(data_parallel="dp")  # DataParallel is CUDA-only
    # ddp on CPU runs (it is accepted) but is not searched by default: start-up costs seconds
    param = case.knob.params(case.hardware)[0]
    assert param.choices == ("none",) and "ddp" in param.accepted
    # the launching pass asks for processes and changes nothing else ...
    launching = case.plan(data_parallel="ddp", data_parallel_processes=2)
    assert launching.processes == 2 and launching.notes["data_parallel"] == "ddp x2"
    assert launching.batch_size == base.batch_size
    assert not [order for order, _ in launching.model_transforms if order == 80]
    # ... and each process's pass takes its share of the batch and of the threads and wraps the
    # model (tests/test_run_distributed.py trains with it, in real processes)
    threads = torch.get_num_threads()
    settings = case.settings(data_parallel="ddp", data_parallel_processes=2)
    in_process = build_plan(case.registry, case.hardware, case.workload, settings, CPU, Rank(1, 2, "gloo"))
    case.plans.append(in_process)
    assert in_process.batch_size == base.batch_size // 2
    assert in_process.notes["batch_per_process"] == base.batch_size // 2
    assert torch.get_num_threads() == max(1, settings["threads"] // 2)
    assert [order for order, _ in in_process.model_transforms] == [80]
    for cleanup in reversed(in_process.cleanups):
        cleanup()
    in_process.cleanups.clear()
    assert torch.get_num_threads() == threads


def test_data_parallel_knob_is_available_where_it_can_run(registry: Registry, hardware: Hardware) -> None:
    knob = registry.knob("data_parallel")
    assert knob.kind == "systems"
    one_gpu = dataclasses.replace(hardware, device_type="cuda", device_count=1)
    assert knob.unavailable(one_gpu) == "needs 2+ CUDA GPUs for this trial"
    two_gpus = dataclasses.replace(hardware, device_type="cuda", device_count=2)
    assert knob.unavailable(two_gpus) is None
    assert [p.name for p in knob.params(two_gpus)] == ["data_parallel"]  # one process per GPU
    assert knob.params(two_gpus)[0].choices == ("none", "ddp", "dp")
    assert knob.unavailable(dataclasses.replace(hardware, device_type="mps")) == "not supported on mps"
    one_core = dataclasses.replace(hardware, cpu_count=1)
    assert knob.unavailable(one_core) == "needs 2+ CPU cores"


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["dp", "ddp"])
def test_data_parallel_trains_on_two_gpus(mode: str, registry: Registry) -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2+ CUDA GPUs")
    from autotune.run import engine
    from autotune.settings import resolve_settings
    from autotune.hardware import detect
    from autotune.workloads import load_workload

    cuda = detect("cuda")
    workload = load_workload("digits", registry)
    settings = resolve_settings(registry, cuda, workload, {"data_parallel": mode})
    result = engine.run(workload, settings, registry, cuda, engine.Budget(steps=30), device="cuda")
    assert result.status == "ok", result.error
    assert result.steps == 30 and result.samples > 30 * settings["batch_size"] // 2
