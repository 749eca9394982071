"""optimizer: the torch optimizer a run builds, with its sub-settings (momentum, weight_decay).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from autotune.plugins.workloads.vision import LeNet

from knob_case import Case


@pytest.mark.parametrize("name", ["optimizer"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    model = LeNet()
    base = case.plan()
    assert base.optimizer_factory is torch.optim.SGD
    assert base.optimizer_kwargs["momentum"] == 0.0
    adam = case.plan(optimizer="adam", weight_decay=0.01)
    assert adam.optimizer_factory is torch.optim.Adam
    assert adam.optimizer_kwargs["weight_decay"] == 0.01
    assert "momentum" not in adam.optimizer_kwargs
    built = adam.optimizer_factory(model.parameters(), **adam.optimizer_kwargs)
    assert isinstance(built, torch.optim.Adam)
    assert built.defaults["weight_decay"] == 0.01
    probe = case.run(optimizer="adam")
    assert probe.result.val_loss != case.baseline.result.val_loss
