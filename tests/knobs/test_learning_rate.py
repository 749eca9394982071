"""learning_rate: the rate the optimizer is built with; another rate, another run.
"""

from __future__ import annotations

from typing import Callable

import pytest

from knob_case import Case


@pytest.mark.parametrize("name", ["learning_rate"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.plan().optimizer_kwargs["lr"] == case.base_value
    assert case.plan(learning_rate=0.2).optimizer_kwargs["lr"] == 0.2
    probe = case.run(learning_rate=0.2)
    assert probe.result.val_loss != case.baseline.result.val_loss
