"""throughput: samples/s end to end, subject to the metric reaching the target."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autotune.formatting import rate
from autotune.objectives.base import Constraint, Objective

# Optuna's constraint value for a trial that reached nothing measurable
UNMEASURED = 1e9


@dataclass(frozen=True)
class Throughput(Objective):
    name: str = "throughput"
    directions: tuple[str, ...] = ("maximize",)
    help: str = "samples/s end to end, subject to the metric reaching the target (Optuna constraint)"
    needs_target: bool = True

    def metric_names(self) -> list[str]:
        return ["samples_per_s"]

    def values(self, metrics: dict[str, Any]) -> float | None:
        return metrics.get("throughput")

    def constraint(self, reached: float | None, target: float | None) -> Constraint | None:
        """How far the metric fell short of the target (Optuna: feasible when <= 0)."""
        if target is None:
            return None
        metric = self.metric
        if reached is None or not math.isfinite(reached):
            shortfall = UNMEASURED
        else:
            shortfall = target - reached if metric.higher_is_better else reached - target
        return Constraint(shortfall, metric.reached(reached, target))

    def value_text(self, value: float) -> str:
        return rate(value)

    def unit(self, metric_name: str | None = None, short: bool = False) -> str:
        return "samples/s"
