"""lr_schedule: the learning rate of every optimizer step under each schedule and each kind of
budget, recorded from inside real runs (lever_runs.py) and compared with torch's OneCycleLR and
the closed forms of the docs.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch

from autotune.budget import Budget
from autotune.errors import UsageError
from autotune.hardware import Hardware
from autotune.registry import Registry
from autotune.run.types import RunResult

from knob_case import STEPS, Case
from lever_runs import LR, STEPS_PER_EPOCH, probe, run, settings_for


def lrs(result: RunResult) -> list[float]:
    return [group_lrs[0] for group_lrs in probe(result)["lrs"]]


def assert_same_rates(actual: list[float], expected: list[float]) -> None:
    # 1e-9, not exact: the closed forms here do the arithmetic in another order than the schedules
    # (a CI run saw 5e-12), while a wrong step or fraction is off by 1e-3 or more
    assert len(actual) == len(expected)
    worst = max(abs(a - e) / abs(e) for a, e in zip(actual, expected))
    assert worst <= 1e-9, worst


@pytest.mark.parametrize("name", ["lr_schedule"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.base_value == "constant"
    assert "lr_schedule" not in case.baseline.result.notes
    probe = case.run(lr_schedule="cosine", lr_warmup_fraction=0.0)
    # the second of 2 steps at half the rate; the tests below check the sequences
    assert probe.result.notes["lr_schedule"].startswith(f"cosine over {STEPS} optimizer steps, warm-up 0 steps")
    assert probe.result.val_loss != case.baseline.result.val_loss


def test_onecycle_over_a_steps_budget_is_torchs_onecycle(reg: Registry, hardware: Hardware) -> None:
    steps = 20
    result = run(reg, hardware, Budget(steps=steps), lr_schedule="onecycle")

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=LR)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps, cycle_momentum=False)
    expected = []
    for _ in range(steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    assert result.steps == steps
    assert_same_rates(lrs(result), expected)
    assert lrs(result)[0] == pytest.approx(LR / 25) and max(lrs(result)) == pytest.approx(LR, rel=0.02)
    assert result.notes["lr_schedule"] == (
        f"onecycle over {steps} optimizer steps, peak lr {LR:g}, last step at lr {expected[-1]:.3g}")


def _warmed(kind: str, k: int, total: int, warmup: int) -> float:
    """The closed form of the docs: warm-up to LR over `warmup` steps, then the decay to 0."""
    if k < warmup:
        return LR * ((k + 1) / warmup)
    done = (k - warmup) / (total - warmup)
    return LR * (0.5 * (1 + math.cos(math.pi * done)) if kind == "cosine" else 1 - done)


@pytest.mark.parametrize("kind, budget, total, fraction, warmup", [
    ("cosine", Budget(epochs=2), 2 * STEPS_PER_EPOCH, 0.2, 3),  # round(3.2)
    ("linear", Budget(steps=15), 15, 0.1, 2),  # round(1.5): Python rounds half to even
    ("cosine", Budget(steps=12), 12, 0.0, 0),
])
def test_warmed_schedules_follow_the_closed_form(
    reg: Registry, hardware: Hardware, kind: str, budget: Budget, total: int, fraction: float, warmup: int
) -> None:
    result = run(reg, hardware, budget, lr_schedule=kind, lr_warmup_fraction=fraction)
    expected = [_warmed(kind, k, total, warmup) for k in range(total)]
    assert result.steps == total
    assert_same_rates(lrs(result), expected)
    if warmup:
        assert expected[warmup - 1] == LR and expected[0] == LR / warmup
    assert expected[-1] < 0.2 * LR
    described = f"{kind} over {total} optimizer steps, warm-up {warmup} steps, peak lr {LR:g}, last step at lr "
    assert result.notes["lr_schedule"] == described + f"{expected[-1]:.3g}"


def _onecycle_at(fraction: float) -> float:
    low, floor = LR / 25, LR / 25 / 1e4
    if fraction < 0.3:
        return LR + (low - LR) / 2 * (math.cos(math.pi * fraction / 0.3) + 1)
    return floor + (LR - floor) / 2 * (math.cos(math.pi * (fraction - 0.3) / 0.7) + 1)


def _cosine_at(fraction: float, warmup: float = 0.1) -> float:
    if fraction < warmup:
        return LR * max(fraction / warmup, 1e-3)
    return LR * 0.5 * (1 + math.cos(math.pi * (fraction - warmup) / (1 - warmup)))


@pytest.mark.parametrize("kind, curve", [("cosine", _cosine_at), ("onecycle", _onecycle_at)])
def test_a_seconds_budget_follows_the_curve_over_the_fraction_spent(
    reg: Registry, hardware: Hardware, kind: str, curve: Any
) -> None:
    overrides = {"lr_warmup_fraction": 0.1} if kind == "cosine" else {}
    result = run(reg, hardware, Budget(seconds=0.4), lr_schedule=kind, **overrides)
    rates, fractions = lrs(result), probe(result)["fractions"]
    assert len(rates) == result.steps >= 10
    # step 0 at fraction 0; step k+1 at the fraction spent when step k ended (the loop counts a
    # step's time after AFTER_STEP, so the schedule and the probe read the same fraction)
    assert_same_rates(rates, [curve(0.0)] + [curve(f) for f in fractions[:-1]])
    assert max(rates) > 0.9 * LR and rates[-1] < 0.1 * LR
    assert result.notes["lr_schedule"].startswith(f"{kind} over the 0.4 s budget")


def test_constant_is_the_baseline_and_changes_nothing(reg: Registry, hardware: Hardware) -> None:
    knob = reg.knob("lr_schedule")
    assert knob.baseline(hardware)["lr_schedule"] == "constant"
    result = run(reg, hardware, Budget(steps=5))
    assert lrs(result) == [LR] * 5 and "lr_schedule" not in result.notes
    with pytest.raises(UsageError, match="applies only when lr_schedule is cosine or linear"):
        settings_for(reg, hardware, lr_schedule="onecycle", lr_warmup_fraction=0.1)


def test_a_one_step_budget_leaves_onecycle_no_room(reg: Registry, hardware: Hardware) -> None:
    result = run(reg, hardware, Budget(steps=1), lr_schedule="onecycle")
    assert lrs(result) == [LR]
    assert result.notes["lr_schedule"] == f"constant: 1 optimizer step leaves no room for onecycle (peak lr {LR:g})"
