"""Objectives as classes: each owns its values, its reports, its re-run value, its constraint,
its Optuna metric names and how its values are written; the registry names them once."""

from __future__ import annotations

import math

import pytest

from autotune.errors import UsageError
from autotune.metrics import Metric
from autotune.objectives import (
    OBJECTIVES, Objective, get_objective, missed_text, objective_unit, objective_value, objective_values,
)
from autotune.tasks import TASKS

MIB = 2**20


def test_objective_values_in_the_objectives_units() -> None:
    assert objective_value("time-to-accuracy", 12.3123) == "12.3s"
    assert objective_value("throughput", 5120.4) == "5,120 samples/s"
    assert objective_value("accuracy", 0.98051) == "0.9805"
    assert objective_value("latency", 0.000312) == "0.312 ms"
    assert objective_values("pareto", [0.97, 5120.0, 143 * MIB]) == "acc 0.97 · 5,120 samples/s · 143 MiB"
    assert objective_values("time-to-accuracy", None) == "-"
    assert objective_unit("time-to-accuracy") == "projected seconds to the target"
    assert objective_unit("time-to-accuracy", short=True) == "projected s"
    assert objective_unit("throughput") == "samples/s"
    assert objective_unit("accuracy", "val_loss") == "val_loss"


def test_a_study_of_an_unknown_objective_is_still_shown() -> None:
    """A study written by a newer autotune (or none) shows its values as metric values."""
    assert objective_value(None, 0.5) == "0.5"
    assert objective_values("from-the-future", [1.0, 2.0]) == "1 / 2"
    assert objective_unit(None, "val_mse") == "val_mse"
    assert missed_text(None) == "the run gave no value"
    assert missed_text("time-to-accuracy").startswith("time-to-accuracy: the target was not reached")


def test_each_objective_is_registered_once_under_its_own_name_and_names_a_task() -> None:
    assert list(OBJECTIVES) == ["time-to-accuracy", "throughput", "accuracy", "pareto", "latency"]
    for name, objective in OBJECTIVES.items():
        assert isinstance(objective, Objective) and objective.name == name
        assert objective.task in TASKS
        assert len(objective.metric_names()) == len(objective.directions)
    with pytest.raises(UsageError, match="unknown objective 'speed'"):
        get_objective("speed")


def test_optuna_metric_names_follow_the_study_metric() -> None:
    mse = Metric.named("val_mse")
    assert get_objective("time-to-accuracy", mse).metric_names() == ["seconds_to_val_mse_target"]
    assert get_objective("pareto", mse).metric_names() == ["val_mse", "samples_per_s", "peak_memory_bytes"]
    # an objective whose first value is the metric takes the metric's direction
    assert get_objective("accuracy", mse).directions == ("minimize",)
    assert get_objective("pareto", mse).directions == ("minimize", "maximize", "minimize")


def test_values_reports_and_reruns_per_objective() -> None:
    tta = get_objective("time-to-accuracy", Metric())
    measured = {"time_to_target": 9.0, "projected_time_to_target": 7.5, "throughput": 1000.0,
                "metric_value": 0.97, "peak_memory_bytes": 5.0, "latency_p50": 0.002}
    assert tta.values(measured) == 7.5
    assert tta.values({"time_to_target": 9.0}) == 9.0
    assert tta.intermediate({"train_time": 3.0, "projected": None, "value": 0.5}) == 3.0
    assert tta.intermediate({"train_time": 3.0, "projected": 2.0, "value": 0.5}) == 2.0
    assert get_objective("throughput").values(measured) == 1000.0
    assert get_objective("latency").values(measured) == 0.002
    assert get_objective("pareto").values(measured) == (0.97, 1000.0, 5.0)
    # accuracy reported to a minimizing study is oriented: 1 - accuracy
    acc = get_objective("accuracy", Metric())
    assert acc.intermediate({"value": 0.9}) == 0.9
    oriented = Objective(directions=("minimize",), metric=Metric())
    assert math.isclose(oriented.intermediate({"value": 0.9}), 0.1)
    # only time-to-accuracy bounds a run that missed; a multi-objective re-run has no one value
    assert get_objective("throughput").missed_after({}) is None
    assert get_objective("pareto").rerun_value(measured) is None
    assert get_objective("throughput").rerun_value(measured) == 1000.0


def test_throughput_owns_its_constraint() -> None:
    throughput = get_objective("throughput", Metric())
    assert throughput.constraint(0.97, None) is None  # no target: no constraint
    met = throughput.constraint(0.97, 0.95)
    assert met is not None and met.feasible and math.isclose(met.value, -0.02)
    short = throughput.constraint(0.90, 0.95)
    assert short is not None and not short.feasible and math.isclose(short.value, 0.05)
    lost = throughput.constraint(float("nan"), 0.95)
    assert lost is not None and not lost.feasible and lost.value > 1
    loss = get_objective("throughput", Metric.named("val_loss")).constraint(1.5, 1.4)
    assert loss is not None and not loss.feasible and math.isclose(loss.value, 0.1)
    assert get_objective("time-to-accuracy").constraint(0.5, 0.9) is None
    assert get_objective("throughput").speedup(200.0, 100.0) == 2.0
    assert get_objective("time-to-accuracy").speedup(2.0, 8.0) == 4.0


def test_the_docs_name_the_metric_names_optuna_records() -> None:
    """docs/objective.md once named `seconds_to_accuracy_target` as if fixed; a study on
    `val_mse` records `seconds_to_val_mse_target`. The page names what each objective records."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "objective.md").read_text()
    assert "seconds_to_<metric>_target" in text
    for objective in OBJECTIVES.values():
        for name in get_objective(objective.name, Metric.named("val_mse")).metric_names():
            assert name.replace("val_mse", "<metric>") in text or name in text, name
