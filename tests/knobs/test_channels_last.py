"""channels_last: the NHWC memory format for the model and its image inputs; left out, with the
reason, for a model without convolutions.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from autotune.errors import UsageError
from autotune.hardware import detect
from autotune.settings import resolve_settings
from autotune.space import load_space

from knob_case import Case, second_conv, transformed
from workloads_for_tests import regression


@pytest.mark.parametrize("name", ["channels_last"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.base_value is False
    assert not second_conv(transformed(case.plan())).weight.is_contiguous(memory_format=torch.channels_last)
    assert case.baseline.first_forward["channels_last"] is False
    plan = case.plan(channels_last=True)
    assert second_conv(transformed(plan)).weight.is_contiguous(memory_format=torch.channels_last)
    batch = torch.randn(2, 3, 8, 8)
    for fn in plan.input_transforms:
        batch = fn(batch)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    probe = case.run(channels_last=True)
    assert probe.first_forward["channels_last"] is True
    # a systems knob: same numbers, different layout
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=1e-3)


def test_channels_last_is_left_out_for_an_mlp_with_the_reason(registry, digits_workload) -> None:  # noqa: ANN001
    hardware = detect("cpu")
    mlp = load_space("default", registry, hardware, regression().traits())
    assert mlp.excluded["channels_last"] == "the workload's model has no convolutions"
    assert "channels_last" not in {p.name for p in mlp.params}
    conv = load_space("default", registry, hardware, digits_workload.traits())
    assert "channels_last" in {p.name for p in conv.params}
    with pytest.raises(UsageError, match="does not apply here: the workload's model has no convolutions"):
        resolve_settings(registry, hardware, regression(), {"channels_last": True})
    assert "channels_last" not in resolve_settings(registry, hardware, regression(), {})
