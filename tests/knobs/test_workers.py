"""workers: DataLoader worker processes, seen loading the training samples.
"""

from __future__ import annotations

import os
from typing import Callable

import pytest

from knob_case import Case


@pytest.mark.parametrize("name", ["workers"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.plan().loader.get("num_workers", 0) == case.base_value == 0
    assert case.baseline.loader_pids == {os.getpid()}
    plan = case.plan(workers=1)
    assert plan.loader["num_workers"] == 1
    assert plan.loader["persistent_workers"] is True
    probe = case.run(workers=1)
    assert probe.loader_pids and os.getpid() not in probe.loader_pids  # a worker loaded the data
    assert probe.result.samples == case.baseline.result.samples
