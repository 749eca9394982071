"""pareto: the metric, throughput and peak memory together; the answer is the Pareto front."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotune.formatting import nbytes, rate, validation
from autotune.objectives.base import Objective

# which value importances are scored on: throughput (the metric's spread says little of speed)
IMPORTANCE_VALUE = 1


@dataclass(frozen=True)
class Pareto(Objective):
    name: str = "pareto"
    directions: tuple[str, ...] = ("maximize", "maximize", "minimize")
    help: str = "the metric better, throughput up, peak memory down: the Pareto front"
    metric_first: bool = True
    importance_value: int = IMPORTANCE_VALUE

    def metric_names(self) -> list[str]:
        return [self.metric.name, "samples_per_s", "peak_memory_bytes"]

    def values(self, metrics: dict[str, Any]) -> tuple[float, ...]:
        return (
            float(metrics["metric_value"]),
            float(metrics["throughput"]),
            float(metrics["peak_memory_bytes"]),
        )

    def values_text(self, values: list[float]) -> str:
        if len(values) != 3:
            return super().values_text(values)
        return f"acc {validation(values[0])} · {rate(values[1])} · {nbytes(values[2])}"
