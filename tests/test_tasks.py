"""Tasks as objects: what differs between a training study and an inference study lives on the
task (validation, budget, default space, the bar set by the baseline, judging a trial)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from autotune.errors import UsageError
from autotune.metrics import Metric
from autotune.objectives import get_objective
from autotune.spec import StudySpec
from autotune.tasks import TASKS, get_task, task_of


def test_tasks_by_name_and_of_a_stored_study() -> None:
    assert list(TASKS) == ["training", "inference"]
    assert get_task(None).name == "training"
    assert not get_task("training").serves_model and get_task("inference").serves_model
    assert task_of({"task": "inference"}).name == "inference"
    # a stored study with no task, or one from a newer autotune, reads as training
    assert task_of(None).name == task_of({"task": "fine-tuning"}).name == "training"
    with pytest.raises(UsageError, match="--task 'serving': choose training or inference"):
        get_task("serving")


def test_each_task_validates_its_own_spec(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="judges serving a model: add --task inference"):
        StudySpec(name="x", objective="latency").validate()
    with pytest.raises(UsageError, match="--checkpoint gives the model"):
        StudySpec(name="x", checkpoint=str(tmp_path / "m.pt")).validate()
    with pytest.raises(UsageError, match="an inference study's is latency"):
        StudySpec(name="x", task="inference", checkpoint="m.pt").validate()
    with pytest.raises(UsageError, match="needs the model to serve"):
        StudySpec(name="x", task="inference", objective="latency").validate()
    model = tmp_path / "m.pt"
    model.write_bytes(b"")
    spec = StudySpec(name="x", task="inference", objective="latency", checkpoint=str(model), iterations=7)
    spec.validate()
    assert spec.budget_text == "7 timed calls"
    assert StudySpec(name="x", budget={"steps": 40}).budget_text == "40 steps"


def test_default_spaces() -> None:
    assert get_task("training").default_space("cpu") == "cpu"
    assert get_task("training").default_space("cuda") == "gpu"
    assert get_task("training").default_space("mps") == "default"
    assert get_task("inference").default_space("cpu") == "default"


def test_the_baseline_sets_a_target_or_a_guard() -> None:
    metric = Metric()
    spec = StudySpec(name="x", max_drop=0.01)
    trained = get_task("training").target_from_baseline(metric, {"metric_value": 0.98}, spec)
    assert trained.target == metric.target_from(0.98) and trained.attrs == {}
    assert trained.said.startswith("target set from the baseline")
    served = get_task("inference").target_from_baseline(metric, {"metric_value": 0.98}, spec)
    assert math.isclose(served.target, 0.98 * 0.99) and served.attrs == {"reference_metric": 0.98}
    assert "at most 1.0% worse than its 0.98" in served.said


def test_judging_a_trial_against_the_tasks_bar() -> None:
    spec = StudySpec(name="x", max_drop=0.01)
    latency = get_objective("latency", Metric())
    inference = get_task("inference")
    ok = inference.judge(latency, 0.975, None, 0.98, spec)
    assert ok.feasible and ok.constraint == 0.0 and ok.drop is not None and ok.reason is None
    worse = inference.judge(latency, 0.90, None, 0.98, spec)
    assert not worse.feasible and worse.constraint > 0 and "infeasible: accuracy 0.9" in (worse.reason or "")
    assert not inference.judge(latency, None, None, 0.98, spec).feasible
    # training leaves the bar to the objective: throughput's constraint, none for time to target
    training = get_task("training")
    judged = training.judge(get_objective("throughput", Metric()), 0.90, 0.95, None, spec)
    assert judged.feasible is False and math.isclose(judged.constraint or 0, 0.05)
    assert training.judge(get_objective("time-to-accuracy", Metric()), 0.90, 0.95, None, spec).constraint is None


def test_an_inference_trial_is_valued_on_the_baselines_clock() -> None:
    inference = get_task("inference")
    assert inference.trial_value(0.004, {"paired_speedup": 2.0}, {"latency_p50": 0.010}) == 0.005
    assert inference.trial_value(0.004, {}, {"latency_p50": 0.010}) == 0.004
    assert inference.trial_value(0.004, {"paired_speedup": float("nan")}, {"latency_p50": 0.010}) == 0.004
    assert get_task("training").trial_value(3.0, {"paired_speedup": 2.0}, {"latency_p50": 1.0}) == 3.0
