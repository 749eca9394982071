"""What a study optimizes: one module per objective, each a subclass of `Objective`
(autotune.objectives.base). Adding one is its module and a line in `OBJECTIVES`.
Torch-free: the terminal UI reads directions and units from here."""

from __future__ import annotations

from typing import Iterable

from autotune.errors import UsageError
from autotune.metrics import Metric
from autotune.objectives.accuracy import Accuracy
from autotune.objectives.base import Constraint, Objective, texts
from autotune.objectives.latency import Latency
from autotune.objectives.pareto import Pareto
from autotune.objectives.throughput import Throughput
from autotune.objectives.time_to_accuracy import TimeToAccuracy

__all__ = [
    "OBJECTIVES", "Constraint", "Objective", "get_objective", "missed_text", "objective_unit", "objective_value", "objective_values",
]

OBJECTIVES: dict[str, Objective] = {o.name: o for o in (TimeToAccuracy(), Throughput(), Accuracy(), Pareto(), Latency())}
# how values of a study whose objective is unknown (or none) are written: as metric values
_UNNAMED = Objective()


def get_objective(name: str, metric: Metric | None = None) -> Objective:
    try:
        objective = OBJECTIVES[name]
    except KeyError:
        raise UsageError(f"unknown objective '{name}' (choose from: {', '.join(OBJECTIVES)})") from None
    return objective.for_metric(metric) if metric is not None else objective


def _named(name: str | None) -> Objective:
    return OBJECTIVES.get(name or "", _UNNAMED)


def objective_value(objective: str | None, value: float | None) -> str:
    """One objective value in its units: 3.2s (time-to-accuracy), 5,120 samples/s, 0.9805."""
    return "-" if value is None else _named(objective).value_text(value)


def objective_values(objective: str | None, values: Iterable[float] | None) -> str:
    """One trial's objective value(s): 3.2s, 5,120 samples/s, or acc 0.9700 · 5,120 samples/s · 143 MiB."""
    return texts(_named(objective), values)


def objective_unit(objective: str | None, metric_name: str | None = None, short: bool = False) -> str:
    """What an objective's values are, for a plot's axis: "projected seconds to the target"
    ("projected s" when `short`), "samples/s", the metric's name."""
    return _named(objective).unit(metric_name, short)


def missed_text(objective: str | None) -> str:
    """Why a run of a study with this objective gave no value."""
    return _named(objective).missed_text()
