"""threads: torch's intra-op thread count during the run, restored after it.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from knob_case import Case


@pytest.mark.parametrize("name", ["threads"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    before = torch.get_num_threads()
    assert case.base_value == case.hardware.cpu_count
    assert case.baseline.threads_at_build == case.base_value
    other = 1 if case.hardware.cpu_count > 1 else 2
    plan = case.plan(threads=other)
    assert plan.notes["threads"] == torch.get_num_threads() == other
    for cleanup in plan.cleanups:
        cleanup()
    assert torch.get_num_threads() == before
    probe = case.run(threads=other)
    assert probe.threads_at_build == other
    assert probe.first_forward["threads"] == other
    assert torch.get_num_threads() == before  # restored when the run ended
