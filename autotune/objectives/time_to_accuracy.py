"""time-to-accuracy: projected training seconds to reach the target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotune.formatting import seconds
from autotune.objectives.base import Objective
from autotune.run.projection import measured_time, time_before_missing


@dataclass(frozen=True)
class TimeToAccuracy(Objective):
    name: str = "time-to-accuracy"
    directions: tuple[str, ...] = ("minimize",)
    help: str = (
        "projected training seconds to reach the target value of the metric: steps x the steady "
        "step time + one-time costs (trials already slower than the best are pruned)"
    )
    needs_target: bool = True
    stop_at_target: bool = True
    prunes_slower_than_best: bool = True
    evals_per_epoch: int = 4
    evals_per_budget: int = 12
    projected: bool = True

    def metric_names(self) -> list[str]:
        return [f"seconds_to_{self.metric.name}_target"]

    def values(self, metrics: dict[str, Any]) -> float | None:
        projected = metrics.get("projected_time_to_target")
        return metrics.get("time_to_target") if projected is None else projected

    def intermediate(self, point: dict[str, Any]) -> float:
        """The projected seconds trained so far: a lower bound on the trial's value."""
        projected = point.get("projected")
        return float(point["train_time"] if projected is None else projected)

    def rerun_value(self, result: dict[str, Any]) -> float | None:
        """The real time to target, end to end (autotune.run.projection.measured_time)."""
        return measured_time(result)

    def missed_after(self, result: dict[str, Any]) -> float | None:
        """Its whole run, end to end: its time to the target is at least that."""
        return None if measured_time(result) is not None else time_before_missing(result)

    def value_text(self, value: float) -> str:
        return seconds(value)

    def unit(self, metric_name: str | None = None, short: bool = False) -> str:
        return "projected s" if short else "projected seconds to the target"

    def missed_text(self) -> str:
        return "time-to-accuracy: the target was not reached in the budget"
