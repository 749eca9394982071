"""optimizer_impl: torch's foreach and fused optimizer implementations, built for real, learning
what the default learns.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.plugins.workloads.vision import LeNet
from autotune.registry import Registry

from knob_case import Case
from lever_runs import probe, run


@pytest.mark.parametrize("name", ["optimizer_impl"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.base_value == "default"
    assert not {"foreach", "fused"} & case.plan().optimizer_kwargs.keys()  # torch's own choice
    plan = case.plan(optimizer_impl="foreach")
    built = plan.optimizer_factory(LeNet().parameters(), **plan.optimizer_kwargs)
    assert built.defaults["foreach"] is True and plan.notes["optimizer_impl"] == "foreach SGD"
    probe = case.run(optimizer_impl="fused")
    assert probe.result.notes["optimizer_impl"] == "fused SGD"
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=1e-4)  # the same update


@pytest.mark.parametrize("optimizer, cls", [("sgd", "SGD"), ("adamw", "AdamW")])
def test_foreach_and_fused_build_that_optimizer_and_learn_the_same(
    reg: Registry, hardware: Hardware, optimizer: str, cls: str
) -> None:
    budget = Budget(steps=6)
    default = run(reg, hardware, budget, optimizer=optimizer)
    assert (probe(default)["optimizer"], probe(default)["foreach"], probe(default)["fused"]) == (cls, None, None)
    assert "optimizer_impl" not in default.notes
    for impl in ("foreach", "fused"):
        result = run(reg, hardware, budget, optimizer=optimizer, optimizer_impl=impl)
        seen = probe(result)
        assert seen["optimizer"] == cls and seen[impl] is True
        assert seen["fused" if impl == "foreach" else "foreach"] in (None, False)
        assert result.notes["optimizer_impl"] == f"{impl} {cls}"
        # the same update, up to float rounding: a systems knob
        assert result.val_loss == pytest.approx(default.val_loss, rel=1e-5)


def test_fused_rmsprop_does_not_exist_and_says_so(reg: Registry, hardware: Hardware) -> None:
    result = run(reg, hardware, Budget(steps=2), status="unsupported", optimizer="rmsprop", optimizer_impl="fused")
    assert result.error == f"optimizer_impl fused: RMSprop has no fused implementation in torch {torch.__version__}"
    foreach = run(reg, hardware, Budget(steps=2), optimizer="rmsprop", optimizer_impl="foreach")
    assert probe(foreach)["optimizer"] == "RMSprop" and probe(foreach)["foreach"] is True
