"""accuracy: the best value of the metric within the budget."""

from __future__ import annotations

from dataclasses import dataclass

from autotune.objectives.base import Objective


@dataclass(frozen=True)
class Accuracy(Objective):
    name: str = "accuracy"
    directions: tuple[str, ...] = ("maximize",)
    help: str = "the best value of the metric (accuracy, val_loss ...) within the budget"
    prunable: bool = True
    metric_first: bool = True
