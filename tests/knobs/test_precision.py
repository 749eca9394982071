"""precision: autocast's dtype for the forward pass (bf16 where this CPU runs it).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from knob_case import Case


@pytest.mark.parametrize("name", ["precision"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.base_value == "fp32"
    assert case.plan().autocast_dtype is None
    assert case.baseline.output_dtypes == {torch.float32}
    if "bf16" not in case.hardware.precisions:
        pytest.skip("bf16 autocast does not run on this CPU")
    assert case.plan(precision="bf16").autocast_dtype is torch.bfloat16
    probe = case.run(precision="bf16")
    assert torch.bfloat16 in probe.output_dtypes
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=0.02)
