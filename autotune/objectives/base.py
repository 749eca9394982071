"""What every objective is: a small base class, in the manner of Optuna's samplers and pruners.

An objective turns a finished run's measurements into Optuna's value(s), says what it reports
after each validation (for pruning), what a re-run's value is, which constraint a trial must
meet, and how its values are written for people. Torch-free: the terminal UI and the read-only
commands format values through it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable

from autotune.formatting import validation
from autotune.metrics import MINIMIZE, Metric


@dataclass(frozen=True)
class Constraint:
    """A trial's standing against an objective's constraint: Optuna's value (feasible when
    <= 0) and whether it is feasible."""

    value: float
    feasible: bool


@dataclass(frozen=True)
class Objective:
    """The base of every objective; subclasses fix its name and what differs."""

    name: str = ""
    directions: tuple[str, ...] = ("maximize",)
    help: str = ""
    needs_target: bool = False
    # Whether Optuna's pruner (--pruner) is asked after each validation. Time-to-accuracy is
    # not: its reports are seconds trained so far, and a pruner comparing those at equal
    # validation counts would prune by throughput alone; it prunes by its lower bound instead
    # (`prunes_slower_than_best`).
    prunable: bool = False
    # Whether a trial already slower than the best by more than the noise is pruned
    # (autotune.study.objective.beyond): its reports are lower bounds on its value.
    prunes_slower_than_best: bool = False
    # Whether its values are projections (autotune.run.projection) that confirmation checks
    # against the values it measures end to end.
    projected: bool = False
    stop_at_target: bool = False
    # Time to target is only as fine as validation is frequent: a 1-epoch budget validated 4
    # times can tell configurations apart only by quarters, and every good one reaches the
    # target "at the first quarter". `evals_per_budget` sets a floor over the whole budget.
    evals_per_epoch: int = 1
    evals_per_budget: int = 0
    metric: Metric = Metric()  # the workload's primary metric (or --metric)
    metric_first: bool = False  # the first value is the metric itself, in its direction
    # which of a multi-objective study's values parameter importances are scored on
    importance_value: int = 0
    # the name of the task it judges (autotune.tasks): training runs, or serving a trained model
    task: str = "training"

    # what the objective is ---------------------------------------------------------------------

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
        return [self.metric.name]

    # values --------------------------------------------------------------------------------------

    def values(self, metrics: dict[str, Any]) -> float | tuple[float, ...] | None:
        """The trial's objective value(s); None when the run did not earn one (target missed)."""
        return metrics.get("metric_value")

    def intermediate(self, point: dict[str, Any]) -> float:
        """Value reported to Optuna after a validation, in the objective's own units, so that
        Optuna's pruners, optuna-dashboard and `trials_dataframe()` read one scale (a pruned
        trial's value is its last report): the metric, oriented like the study's first
        direction."""
        value = float(point["value"])
        if (self.directions[0] == MINIMIZE) == (self.metric.direction == MINIMIZE):
            return value
        return 1.0 - value if self.metric.name == "accuracy" else -value

    def rerun_value(self, result: dict[str, Any]) -> float | None:
        """A re-run's value as measured, not projected (confirmation, the playoff, the path)."""
        value = self.values(result)
        return value if not isinstance(value, tuple) else None

    def missed_after(self, result: dict[str, Any]) -> float | None:
        """For a re-run that trained its whole budget without earning a value: a lower bound on
        its value, when the objective has one (time to target). None otherwise."""
        return None

    def constraint(self, reached: float | None, target: float | None) -> Constraint | None:
        """The trial's constraint beyond memory, from the metric it reached; None: none."""
        return None

    def speedup(self, best: float, baseline: float) -> float:
        """How much better best is than baseline, as a ratio > 1 when better."""
        if self.directions[0] == MINIMIZE:
            return baseline / best if best > 0 else float("inf")
        return best / baseline if baseline > 0 else float("inf")

    # for people ----------------------------------------------------------------------------------

    def value_text(self, value: float) -> str:
        """One value in the objective's units."""
        return validation(value)

    def values_text(self, values: list[float]) -> str:
        """A trial's values (at least two)."""
        return " / ".join(validation(v) for v in values)

    def unit(self, metric_name: str | None = None, short: bool = False) -> str:
        """What the values are, for a plot's axis."""
        return metric_name or "value"

    def missed_text(self) -> str:
        """Why a run gave no value."""
        return "the run gave no value"


def texts(objective: Objective, values: Iterable[float] | None) -> str:
    """One trial's objective value(s), or "-"."""
    values = list(values or ())
    if not values:
        return "-"
    return objective.value_text(values[0]) if len(values) == 1 else objective.values_text(values)
