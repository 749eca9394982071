"""What a study tunes, as an object: a task owns what differs between training runs and serving a
trained model, so that the study's core never names one. Torch-free and Optuna-free: the spec,
the read-only commands and the terminal UI ask the task of a study what to show."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotune.metrics import Metric
    from autotune.objectives import Objective
    from autotune.spec import StudySpec


@dataclass(frozen=True)
class BaselineTarget:
    """What the baseline's measured metric fixes: the bar every trial is judged by, the line
    that says so, and the study user attrs that record it."""

    target: float
    said: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    """A finished trial against the task's bar: Optuna's accuracy constraint (feasible when
    <= 0; None: the trial has none), whether it is feasible, the metric's relative drop (serving
    only) and why it is infeasible."""

    constraint: float | None = None
    feasible: bool | None = None
    drop: float | None = None
    reason: str | None = None


class Task:
    """The base of every task; `name` is what `--task` and Knob.task say."""

    name: str = ""
    help: str = ""
    # a trained model is served and measured: its studies show latency, a guard and a front,
    # and no learning curve
    serves_model: bool = False

    def validate(self, spec: "StudySpec", objective: "Objective") -> None:
        """UsageError when the spec asks for something this task cannot do."""

    def check_budget(self, spec: "StudySpec") -> None:
        """UsageError when the spec's budget does not fit this task's trials."""

    def budget_text(self, spec: "StudySpec") -> str:
        """What one trial is given, for people: "5 epochs", "30 timed calls"."""
        (key, value), = spec.budget.items()
        return f"{value} {key}"

    def default_space(self, device_type: str) -> str:
        """The bundled space a study of this task searches when none is named."""
        return "default"

    def target_from_baseline(self, metric: "Metric", result: dict[str, Any], spec: "StudySpec") -> BaselineTarget:
        """The bar set by the baseline's measured `result` (it has a metric_value)."""
        raise NotImplementedError

    def judge(self, objective: "Objective", reached: float | None, target: float | None,
              reference: float | None, spec: "StudySpec") -> Verdict:
        """A finished trial that reached `reached` against the bar (`target`; `reference`: the
        baseline's own metric, where the task keeps it)."""
        constraint = objective.constraint(reached, target)
        if constraint is None:
            return Verdict()
        return Verdict(constraint=constraint.value, feasible=constraint.feasible)

    def trial_value(self, measured: Any, result: dict[str, Any], baseline_attrs: dict[str, Any]) -> Any:
        """A searched trial's objective value, from what it measured and the baseline's record."""
        return measured

    def guard(self, user_attrs: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        """The bar a study's summary shows beside its target; None: the target says it all."""
        return None


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
