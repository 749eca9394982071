"""batch_size: how many samples a step trains on, seen in the run's sample count and the model's
inputs.
"""

from __future__ import annotations

from typing import Callable

import pytest

from knob_case import STEPS, Case


@pytest.mark.parametrize("name", ["batch_size"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.plan().batch_size == case.base_value
    assert case.baseline.result.samples == STEPS * case.base_value
    other = 16
    assert case.plan(batch_size=other).batch_size == other
    probe = case.run(batch_size=other)
    assert probe.result.samples == STEPS * other
    assert probe.first_forward["input_shape"][0] == other
    assert probe.result.val_loss != case.baseline.result.val_loss
