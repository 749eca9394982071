"""Time to target as measured factors (autotune.run.projection): the steady step is a median, so
a load spike is not the configuration's cost; one-time costs are measured apart and do not
scale with the run's length; and for the built-in workloads the projection matches the real,
end-to-end time to target of the run it came from within 25%."""

from __future__ import annotations

import pytest

from autotune.budget import Budget
from autotune.hardware import detect
from autotune.plugins.workloads.catalog import digits, tinylm
from autotune.registry import load_registry
from autotune.run import engine
from autotune.run.projection import StepClock, measured_time
from autotune.settings import baseline_settings


def test_the_steady_step_is_a_median_and_one_time_costs_do_not_scale() -> None:
    clock = StepClock(warmup_steps=2, setup=0.5)
    for seconds in (1.0, 0.8):  # the warm-up: first-iteration set-up
        clock.step(seconds)
    for seconds in [0.1] * 9 + [2.0]:  # one step caught by a load spike
        clock.step(seconds)
    clock.epoch_boundary(0.3)
    assert clock.step_time == pytest.approx(0.1)
    assert clock.one_time() == {"setup": 0.5, "warmup": pytest.approx(1.8 - 2 * 0.1)}
    # 12 steps at 0.1 s, the epoch start, and the one-time costs once; the spike is left out
    assert clock.projected(12) == pytest.approx(0.5 + 1.6 + 12 * 0.1 + 0.3)
    longer = StepClock(warmup_steps=2, setup=0.5, scale=10.0)
    for seconds in (1.0, 0.8, *[0.1] * 9, 2.0):
        longer.step(seconds)
    longer.epoch_boundary(0.3)
    assert longer.projected(12) == pytest.approx(0.5 + 1.6 + 10 * (12 * 0.1 + 0.3))


def test_warmup_faster_than_steady_steps_costs_nothing_once() -> None:
    clock = StepClock(warmup_steps=1)
    clock.step(0.01)
    clock.step(0.2)
    assert clock.one_time()["warmup"] == 0.0 and clock.projected(2) == pytest.approx(0.4)


def test_the_projection_of_the_steps_so_far_never_falls() -> None:
    """Early steady steps are often slower (caches, the allocator, a busy machine). One median
    over every step so far falls as the fast ones pile up, and took the seconds already trained
    down with it; each stretch between two validations at its own median only adds."""
    clock = StepClock(warmup_steps=2, setup=0.5)
    projections = []
    for step, seconds in enumerate([1.0, 0.8] + [0.3] * 8 + [0.1] * 40, start=1):
        clock.step(seconds)
        if step % 5 == 0:  # a validation
            projections.append(clock.projected(step))
    assert projections == sorted(projections)
    # the warm-up paid as it ran, then 8 steps at 0.3 s and 40 at 0.1 s: each at its own cost
    assert projections[-1] == pytest.approx(0.5 + 1.8 + 8 * 0.3 + 40 * 0.1)
    assert clock.projected(50) == projections[-1]  # asked again at the same step: the same seconds


def test_a_load_spike_in_a_stretch_of_one_step_is_not_its_cost() -> None:
    """Validations every step on a small data set: a stretch of one step is counted at the median
    of the last few steady steps, not at its own raw time."""
    clock = StepClock(warmup_steps=0)
    for step, seconds in enumerate([0.1] * 10 + [2.0] + [0.1] * 3, start=1):
        clock.step(seconds)
        clock.projected(step)
    assert clock.projected(14) == pytest.approx(14 * 0.1)


def test_a_real_runs_projected_seconds_grow_at_every_validation() -> None:
    """A short digits run validated every other step: the projected seconds trained so far, each
    trial's Optuna intermediate value, never fall."""
    workload = digits()
    registry, hardware = load_registry(), detect("cpu")
    settings = baseline_settings(registry, hardware, workload)
    options = engine.RunOptions(metric="accuracy", direction="maximize", eval_every_steps=2, warmup_steps=3)
    result = engine.run(workload, settings, registry, hardware, Budget(steps=40), device="cpu", options=options)
    assert result.status == "ok", result.error
    projections = [p.projected for p in result.curve]
    assert len(projections) == 20 and None not in projections
    assert projections == sorted(projections)
    assert projections[0] >= result.setup_time


@pytest.mark.parametrize(("factory", "target", "metric", "direction", "budget"), [
    # targets some dozens of steps away: a projection from three steady steps is at the mercy
    # of one scheduler hiccup on a shared machine, which is noise, not the model being wrong
    (digits, 0.9, "accuracy", "maximize", Budget(epochs=4)),
    (tinylm, 3.6, "val_loss", "minimize", Budget(steps=60)),
], ids=["digits", "tinylm"])
def test_the_projection_matches_the_measured_time_to_target(factory, target, metric, direction, budget) -> None:  # noqa: ANN001
    # The projection counts steady steps; the measured time also holds what the machine did
    # meanwhile (another process's burst on a shared 2-core box). A projection that is wrong is
    # wrong in every run, so the run may be repeated up to three times and one must match.
    misses = []
    for _ in range(3):
        projected, measured = _projected_and_measured(factory, target, metric, direction, budget)
        if projected == pytest.approx(measured, rel=0.25):
            return
        misses.append(f"projected {projected:.2f}s, measured {measured:.2f}s")
    pytest.fail("; ".join(misses))


def _projected_and_measured(factory, target, metric, direction, budget) -> tuple[float, float]:  # noqa: ANN001
    workload = factory()
    registry, hardware = load_registry(), detect("cpu")
    settings = baseline_settings(registry, hardware, workload)
    options = engine.RunOptions(target=target, metric=metric, direction=direction, stop_at_target=True,
                                evals_per_epoch=4, eval_every_steps=None if budget.epochs else 10)
    result = engine.run(workload, settings, registry, hardware, budget, device="cpu", options=options)
    assert result.status == "ok", result.error
    measured = measured_time(result.to_dict())
    assert measured is not None and result.projected_time_to_target is not None, "the target was not reached"
    assert len(result.curve) >= 3, "too few validations to test a projection"
    assert set(result.one_time) == {"setup", "warmup"} and result.step_time > 0
    # every validation reports the projection so far, growing with the steps trained
    projections = [p.projected for p in result.curve]
    assert projections == sorted(projections) and projections[-1] == result.projected_time_to_target
    return result.projected_time_to_target, measured
