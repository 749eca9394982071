"""Fixtures of the knob tests: the run with every built-in knob at its baseline and a `Case` per
knob (knob_case.py), the registry with the training levers' probe (lever_runs.py), tinylm, and the
process-wide state a refused run may leave changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from autotune.hardware import Hardware
from autotune.registry import Registry, load_registry
from autotune.run.plan import TrainingPlan
from autotune.settings import resolve_settings
from autotune.workloads import Workload

from knob_case import Case, Probe, knob_baselines
from lever_runs import PROBE_SOURCE, matmul_flags


@pytest.fixture(scope="session")
def baseline(hardware: Hardware, digits_workload: Workload, tmp_path_factory: pytest.TempPathFactory) -> Probe:
    """One run with every knob at its own baseline, shared by every knob's `test_knob_changes_the_run`."""
    registry = load_registry(entry_points=False)
    settings = resolve_settings(registry, hardware, digits_workload, knob_baselines(registry, hardware))
    return Probe(digits_workload, tmp_path_factory.mktemp("baseline") / "pids").run(registry, hardware, settings)


@pytest.fixture
def case_for(
    registry: Registry, hardware: Hardware, digits_workload: Workload, baseline: Probe, tmp_path: Path
) -> Iterator[Any]:
    """`case_for(name)`: the built-in knob `name` against the shared baseline run, its baseline value
    one that its parameter accepts. The plans a case builds are cleaned up when the test ends."""
    plans: list[TrainingPlan] = []

    def make(name: str) -> Case:
        case = Case(registry.knob(name), registry, hardware, digits_workload, baseline, tmp_path, plans)
        param = next(p for p in case.knob.params(case.hardware) if p.name == name)
        assert param.coerce(case.base_value) == case.base_value
        return case

    yield make
    for plan in plans:
        for cleanup in plan.cleanups:
            cleanup()


@pytest.fixture(autouse=True)
def process_state() -> Any:
    """The thread count and fp32 matmul flags as they were: a run refused in `apply` (unsupported)
    never runs the cleanups of the knobs applied before the one that refused (threads)."""
    threads, flags = torch.get_num_threads(), matmul_flags()
    yield
    torch.set_num_threads(threads)
    if matmul_flags() != flags:
        backends = torch.backends
        torch.set_float32_matmul_precision(flags["matmul"])
        backends.mkldnn.matmul.fp32_precision = flags["mkldnn_matmul"]
        backends.mkldnn.conv.fp32_precision = flags["mkldnn_conv"]
        backends.cuda.matmul.fp32_precision = flags["cuda_matmul"]
        backends.cudnn.conv.fp32_precision = flags["cudnn_conv"]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The built-ins, then the training levers' probe (lever_runs.py). test_structured_pruning.py
    has a probe of its own."""
    path = tmp_path_factory.mktemp("probe") / "lever_probe.py"
    path.write_text(PROBE_SOURCE)
    return load_registry(entry_points=False, plugin_paths=[str(path)])


@pytest.fixture(scope="module")
def lm() -> Workload:
    """tinylm, built once a module (the memory knobs' tests record its models: mlp_runs.tiny_lm)."""
    from autotune.plugins.workloads.catalog import tinylm

    return tinylm()
