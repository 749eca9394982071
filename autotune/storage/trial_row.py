"""One trial, flattened for display and for the rules that count and rank trials.

Torch-free and Textual-free. Built from an Optuna `FrozenTrial` (`row_from_frozen`) or straight
from Optuna's SQLite tables (autotune.storage.optuna_sqlite); both give equal rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from autotune.statuses import FINISHED_TRIAL_STATES, TRIAL_METRICS

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial


@dataclass(eq=True)
class TrialRow:
    """One trial. Rows of finished trials are shared between readers: do not mutate."""

    number: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    autotune_status: str | None
    params: dict[str, Any]
    settings: dict[str, Any]
    metrics: dict[str, Any]
    reason: str | None
    duration: float | None  # seconds, finished trials only
    baseline: bool
    intermediate: dict[int, float]
    values: list[float] | None = None
    started_at: float | None = None  # unix time
    completed_at: float | None = None
    log_tail: str | None = None
    feasible: bool = True  # False: below the target accuracy of a throughput study
    # Trial numbers this trial runs again: autotune's user attr retry_of, and Optuna's
    # RetryHeartbeatStaleTrialCallback system attrs failed_trial (the chain's first) and
    # retry_history (all of it). A trial some other trial retries does not count.
    retries: tuple[int, ...] = ()
    enqueued: bool = False  # asked for by `study start --enqueue` (autotune.study.enqueued)
    distributions: dict[str, "BaseDistribution"] = field(default_factory=dict, repr=False, compare=False)

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_TRIAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field but the distributions."""
        return {
            "number": self.number, "state": self.state, "autotune_status": self.autotune_status,
            "values": self.values, "params": self.params, "settings": self.settings,
            "metrics": self.metrics, "reason": self.reason, "duration": self.duration,
            "baseline": self.baseline, "feasible": self.feasible,
            "intermediate": {str(k): v for k, v in self.intermediate.items()},
            "started_at": self.started_at, "completed_at": self.completed_at,
            "log_tail": self.log_tail, "retries": list(self.retries), "enqueued": self.enqueued,
        }


def retried_numbers(user_attrs: dict[str, Any], system_attrs: dict[str, Any]) -> tuple[int, ...]:
    """The trial numbers a trial with these attributes runs again (see TrialRow.retries)."""
    found: list[int] = []
    for value in (user_attrs.get("retry_of"), system_attrs.get("failed_trial"), *system_attrs.get("retry_history", ())):
        if isinstance(value, int) and not isinstance(value, bool) and value not in found:
            found.append(value)
    return tuple(found)


def make_row(
    number: int,
    state: str,
    values: list[float] | None,
    params: dict[str, Any],
    distributions: dict[str, "BaseDistribution"],
    user_attrs: dict[str, Any],
    intermediate: dict[int, float],
    started: datetime | None,
    completed: datetime | None,
    system_attrs: dict[str, Any] | None = None,
) -> TrialRow:
    start = started.timestamp() if started else None
    end = completed.timestamp() if completed else None
    settings = user_attrs.get("settings")
    return TrialRow(
        number=number,
        state=state,
        autotune_status=user_attrs.get("autotune_status"),
        params=params,
        settings=dict(settings) if isinstance(settings, dict) else dict(params),
        # with the metric at each validation ("curve"): Optuna's intermediate values are in the
        # objective's units, seconds for time-to-accuracy
        metrics={k: user_attrs[k] for k in (*TRIAL_METRICS, "curve") if k in user_attrs},
        reason=user_attrs.get("reason") or _unrecorded(state, user_attrs),
        duration=end - start if start is not None and end is not None else None,
        baseline=bool(user_attrs.get("baseline", False)),
        intermediate=intermediate,
        values=values,
        started_at=start,
        completed_at=end,
        log_tail=user_attrs.get("log_tail"),
        feasible=user_attrs.get("feasible", True) is not False,
        retries=retried_numbers(user_attrs, system_attrs or {}),
        enqueued=bool(user_attrs.get("enqueued", False)),
        distributions=distributions,
    )


def _unrecorded(state: str, user_attrs: dict[str, Any]) -> str | None:
    """Why a trial failed without autotune saying so: Optuna failed it when its runner stopped
    sending heartbeats (the runner died or hung), after which it runs again."""
    if state == "FAIL" and "autotune_status" not in user_attrs:
        return "its runner stopped sending heartbeats (it died or hung) before recording a result"
    return None


def row_from_frozen(trial: "FrozenTrial") -> TrialRow:
    return make_row(
        trial.number, trial.state.name, list(trial.values) if trial.values is not None else None,
        dict(trial.params), dict(trial.distributions), trial.user_attrs,
        dict(trial.intermediate_values), trial.datetime_start, trial.datetime_complete,
        trial.system_attrs,
    )
