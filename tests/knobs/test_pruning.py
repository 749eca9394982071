"""pruning: unstructured magnitude pruning; the masks hold through training under each optimizer,
and it is a model-size knob, not a speed one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.registry import Registry
from autotune.run import engine
from autotune.run.measure import nonzero_fraction
from autotune.settings import resolve_settings
from autotune.workloads import Workload

from knob_case import STEPS, Case, transformed


@pytest.mark.parametrize("name", ["pruning"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.base_value == 0.0
    assert case.baseline.first_forward["nonzero"] == 1.0
    assert nonzero_fraction(transformed(case.plan())) == 1.0
    amount = 0.5
    assert nonzero_fraction(transformed(case.plan(pruning=amount))) == pytest.approx(1 - amount, abs=0.01)
    probe = case.run(pruning=amount)
    assert probe.first_forward["nonzero"] == pytest.approx(1 - amount, abs=0.01)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "rmsprop"])
def test_pruning_sparsity_survives_training(
    registry: Registry, hardware: Hardware, digits_workload: Workload, optimizer: str
) -> None:
    overrides = {"pruning": 0.5, "optimizer": optimizer}
    if optimizer == "adamw":
        overrides["weight_decay"] = 0.05
    settings = resolve_settings(registry, hardware, digits_workload, overrides)
    result = engine.run(digits_workload, settings, registry, hardware, Budget(steps=STEPS), device="cpu")
    assert result.status == "ok", result.error
    assert result.nonzero_fraction == pytest.approx(0.5, abs=0.02)


def test_the_unstructured_knob_says_it_brings_no_speed() -> None:
    from autotune.plugins.training import pruning

    assert "not faster" in pruning.Pruning.help
    assert "model-size knob" in (pruning.__doc__ or "")
    assert Path(pruning.__file__).name == "pruning.py"
