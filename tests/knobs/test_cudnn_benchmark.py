"""cudnn_benchmark: cuDNN's autotuner, CUDA-only: left out on CPU, set and restored on CUDA (`gpu`).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from autotune.errors import UsageError
from autotune.hardware import detect
from autotune.knob import exclusion
from autotune.registry import Registry
from autotune.run.local import build_plan
from autotune.settings import resolve_settings
from autotune.workloads import Workload

from knob_case import Case


@pytest.mark.parametrize("name", ["cudnn_benchmark"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    reason = exclusion(case.knob, case.hardware)
    assert isinstance(reason, str) and "CUDA" in reason
    assert "cudnn_benchmark" not in case.baseline.result.settings
    with pytest.raises(UsageError, match="does not apply"):
        case.settings(cudnn_benchmark=True)
    before = torch.backends.cudnn.benchmark
    plan = case.plan(cudnn_benchmark=case.base_value)  # the untuned value is harmless
    assert "cudnn_benchmark" not in plan.notes
    assert torch.backends.cudnn.benchmark == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cudnn_benchmark_on_cuda(registry: Registry, digits_workload: Workload) -> None:
    cuda = detect("cuda")
    knob = registry.knob("cudnn_benchmark")
    assert knob.unavailable(cuda) is None
    before = torch.backends.cudnn.benchmark
    settings = resolve_settings(registry, cuda, digits_workload, {"cudnn_benchmark": not before})
    plan = build_plan(registry, cuda, digits_workload, settings, torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is (not before)
    assert plan.notes["cudnn_benchmark"] is (not before)
    for cleanup in plan.cleanups:
        cleanup()
    assert torch.backends.cudnn.benchmark is before
