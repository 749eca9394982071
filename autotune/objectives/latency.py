"""latency: serving a trained model, p50 latency of one call at batch 1 (autotune.inference)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotune.formatting import milliseconds
from autotune.objectives.base import Objective


@dataclass(frozen=True)
class Latency(Objective):
    name: str = "latency"
    directions: tuple[str, ...] = ("minimize",)
    help: str = (
        "serving a trained model: p50 latency of one call at batch 1, subject to the accuracy guard "
        "(a trial whose metric drops more than --max-drop below the unoptimized model's is infeasible)"
    )
    needs_target: bool = True
    task: str = "inference"

    def metric_names(self) -> list[str]:
        return ["latency_p50_seconds"]

    def values(self, metrics: dict[str, Any]) -> float | None:
        return metrics.get("latency_p50")

    def value_text(self, value: float) -> str:
        return milliseconds(value)

    def unit(self, metric_name: str | None = None, short: bool = False) -> str:
        return "latency" if short else "latency of one call at batch 1 (p50)"
