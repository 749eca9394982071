"""What a study optimizes: how a finished run becomes an Optuna value, and what is reported
along the way for pruning. Torch-free: the terminal UI reads directions from here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from autotune.errors import UsageError
from autotune.metrics import MINIMIZE, Metric


@dataclass(frozen=True)
class Objective:
    name: str
    directions: tuple[str, ...]
    help: str
    needs_target: bool = False
    # Whether Optuna's pruner (--pruner) is asked after each validation. Time-to-accuracy is
    # not: its reports are seconds trained so far, and a pruner comparing those at equal
    # validation counts would prune by throughput alone; it prunes by its lower bound instead
    # (autotune.study.objective.beyond).
    prunable: bool = False
    stop_at_target: bool = False
    # Time to target is only as fine as validation is frequent: a 1-epoch budget validated 4
    # times can tell configurations apart only by quarters, and every good one reaches the
    # target "at the first quarter". `evals_per_budget` sets a floor over the whole budget.
    evals_per_epoch: int = 1
    evals_per_budget: int = 0
    metric: Metric = Metric()  # the workload's primary metric (or --metric)
    metric_first: bool = False  # the first value is the metric itself, in its direction
    # what the study tunes: training runs, or serving a trained model (autotune.inference)
    task: str = "training"

    def for_metric(self, metric: Metric) -> "Objective":
        """This objective judging by `metric`: an objective whose first value is the metric
        takes the metric's direction (val_loss is minimized)."""
        directions = self.directions
        if self.metric_first:
            directions = (metric.direction, *directions[1:])
        return dataclasses.replace(self, metric=metric, directions=directions)

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    def metric_names(self) -> list[str]:
        """What each value is, for Optuna (Study.set_metric_names: optuna-dashboard, the
        dataframe's column names), in the values' own units."""
        return {
            "time-to-accuracy": [f"seconds_to_{self.metric.name}_target"],
            "throughput": ["samples_per_s"],
            "accuracy": [self.metric.name],
            "pareto": [self.metric.name, "samples_per_s", "peak_memory_bytes"],
            "latency": ["latency_p50_seconds"],
        }[self.name]

    def intermediate(self, point: dict[str, Any]) -> float:
        """Value reported to Optuna after a validation, in the objective's own units, so that
        Optuna's pruners, optuna-dashboard and `trials_dataframe()` read one scale (a pruned
        trial's value is its last report). For time-to-accuracy: the projected seconds trained
        so far, a lower bound on the trial's value; otherwise the metric, oriented like the
        study's first direction."""
        if self.name == "time-to-accuracy":
            projected = point.get("projected")
            return float(point["train_time"] if projected is None else projected)
        value = float(point["value"])
        if (self.directions[0] == MINIMIZE) == (self.metric.direction == MINIMIZE):
            return value
        return 1.0 - value if self.metric.name == "accuracy" else -value

    def values(self, metrics: dict[str, Any]) -> float | tuple[float, ...] | None:
        """The trial's objective value(s); None when the run did not earn one (target missed)."""
        if self.name == "time-to-accuracy":
            projected = metrics.get("projected_time_to_target")
            return metrics.get("time_to_target") if projected is None else projected
        if self.name == "throughput":
            return metrics.get("throughput")
        if self.name == "latency":
            return metrics.get("latency_p50")
        if self.name == "accuracy":
            return metrics.get("metric_value")
        return (
            float(metrics["metric_value"]),
            float(metrics["throughput"]),
            float(metrics["peak_memory_bytes"]),
        )

    def speedup(self, best: float, baseline: float) -> float:
        """How much better best is than baseline, as a ratio > 1 when better."""
        if self.directions[0] == "minimize":
            return baseline / best if best > 0 else float("inf")
        return best / baseline if baseline > 0 else float("inf")


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective(
            "time-to-accuracy", ("minimize",),
            "projected training seconds to reach the target value of the metric: steps x the steady "
            "step time + one-time costs (trials already slower than the best are pruned)",
            needs_target=True, stop_at_target=True, evals_per_epoch=4, evals_per_budget=12,
        ),
        Objective(
            "throughput", ("maximize",),
            "samples/s end to end, subject to the metric reaching the target (Optuna constraint)",
            needs_target=True,
        ),
        Objective(
            "accuracy", ("maximize",), "the best value of the metric (accuracy, val_loss ...) within the budget",
            prunable=True, metric_first=True,
        ),
        Objective(
            "pareto", ("maximize", "maximize", "minimize"),
            "the metric better, throughput up, peak memory down: the Pareto front", metric_first=True,
        ),
        Objective(
            "latency", ("minimize",),
            "serving a trained model: p50 latency of one call at batch 1, subject to the accuracy guard "
            "(a trial whose metric drops more than --max-drop below the unoptimized model's is infeasible)",
            needs_target=True, task="inference",
        ),
    )
}

def get_objective(name: str, metric: Metric | None = None) -> Objective:
    try:
        objective = OBJECTIVES[name]
    except KeyError:
        raise UsageError(f"unknown objective '{name}' (choose from: {', '.join(OBJECTIVES)})") from None
    return objective.for_metric(metric) if metric is not None else objective
