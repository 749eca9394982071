"""What a study optimizes: how a finished run becomes an Optuna value, and what is reported
along the way for pruning. Torch-free: the terminal UI reads directions from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autotune.errors import UsageError


@dataclass(frozen=True)
class Objective:
    name: str
    directions: tuple[str, ...]
    help: str
    needs_target: bool = False
    prunable: bool = False
    stop_at_target: bool = False
    evals_per_epoch: int = 1  # time-to-target is only as fine as validation is frequent

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    def intermediate(self, point: dict[str, Any]) -> float:
        """Value reported after a validation, oriented like the study's direction."""
        accuracy = float(point["val_accuracy"])
        return 1.0 - accuracy if self.directions[0] == "minimize" else accuracy

    def values(self, metrics: dict[str, Any]) -> float | tuple[float, ...] | None:
        """The trial's objective value(s); None when the run did not earn one (target missed)."""
        if self.name == "time-to-accuracy":
            return metrics.get("time_to_target")
        if self.name == "throughput":
            return metrics.get("throughput")
        if self.name == "accuracy":
            return metrics.get("val_accuracy")
        return (
            float(metrics["val_accuracy"]),
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
            "training seconds to reach the target validation accuracy (trials that cannot are pruned)",
            needs_target=True, prunable=True, stop_at_target=True, evals_per_epoch=4,
        ),
        Objective(
            "throughput", ("maximize",),
            "samples/s end to end, subject to validation accuracy >= target (Optuna constraint)",
            needs_target=True,
        ),
        Objective("accuracy", ("maximize",), "validation accuracy within the budget", prunable=True),
        Objective(
            "pareto", ("maximize", "maximize", "minimize"),
            "accuracy up, throughput up, peak memory down: the Pareto front",
        ),
    )
}

PARETO_METRICS = ("val_accuracy", "throughput", "peak_memory_bytes")


def get_objective(name: str) -> Objective:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise UsageError(f"unknown objective '{name}' (choose from: {', '.join(OBJECTIVES)})") from None
