"""What a systems setting costs over the run's length (autotune.study.paired.run_cost): its
one-time costs and its mean step, epoch starts included, not its median step alone."""

from __future__ import annotations

import pytest

from autotune.study.paired import run_cost, run_steps


def _result(setup: float, warmup: float, train: float, steps: int = 30, epochs: float = 1.25,
            step_time: float = 0.01) -> dict:
    return {"one_time": {"setup": setup, "warmup": warmup}, "train_time": train, "steps": steps,
            "epochs": epochs, "step_time": step_time}


def test_a_setting_with_a_one_time_cost_pays_off_only_over_a_long_enough_run() -> None:
    # compile-like: half a second once, then steps 20% shorter than the reference's
    reference = _result(setup=0.1, warmup=0.0, train=0.30)
    compiled = _result(setup=0.1, warmup=0.5, train=0.5 + 0.24, step_time=0.008)
    assert run_cost(reference, 100) / run_cost(compiled, 100) < 1.0  # a short run: it loses
    assert run_cost(reference, 100_000) / run_cost(compiled, 100_000) == pytest.approx(1.25, rel=0.01)


def test_epoch_starts_count_where_a_median_step_hides_them() -> None:
    # the same median step, but each epoch's start stalls 0.1 s (30 steps, one start among them)
    reference = _result(setup=0.1, warmup=0.0, train=0.30)
    stalling = _result(setup=0.1, warmup=0.0, train=0.40)
    assert run_cost(reference, 1000) / run_cost(stalling, 1000) == pytest.approx(0.75, rel=0.01)


def test_the_runs_length_in_steps() -> None:
    result = _result(setup=0.1, warmup=0.0, train=0.30, steps=30, epochs=1.25)
    assert run_steps({"steps": 1500}, result) == 1500
    assert run_steps({"epochs": 50}, result) == pytest.approx(1200)
    assert run_steps({"seconds": 60}, result) == pytest.approx(6000)
