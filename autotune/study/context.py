"""What the parts of a study are handed instead of the runner: a read-only `TrialContext`, and
a small `StudyState` that Optuna's worker threads share behind a lock.

The objective, confirmation, re-runs, the ablation and the checkpoint read the study's fixed
facts from the context and change only the state (the target the baseline sets, why the study
cannot go on), so what each may touch is written in its signature.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from autotune.home import trial_logs
from autotune.settings import baseline_settings
from autotune.storage.results import best_row
from autotune.storage.trial_row import row_from_frozen

if TYPE_CHECKING:
    import optuna

    from autotune.hardware import Hardware
    from autotune.metrics import Metric
    from autotune.objectives import Objective
    from autotune.registry import Registry
    from autotune.space import SearchSpace
    from autotune.spec import StudySpec
    from autotune.study.prepare import Prepared
    from autotune.tasks import Task
    from autotune.workloads import Workload


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one study reads and none changes: what was asked (`spec`), how it is
    judged (`objective`, `metric`, `task`), what is searched and where (`space`, `registry`,
    `hardware`, `workload`), the baseline recipe's settings, and where trials log."""

    spec: "StudySpec"
    objective: "Objective"
    task: "Task"
    metric: "Metric"
    registry: "Registry"
    hardware: "Hardware"
    workload: "Workload"
    space: "SearchSpace"
    baseline: dict[str, Any]
    storage_url: str
    logs_dir: Path

    @classmethod
    def of(cls, prepared: "Prepared") -> "TrialContext":
        return cls(
            spec=prepared.spec, objective=prepared.objective, task=prepared.task, metric=prepared.metric,
            registry=prepared.registry, hardware=prepared.hardware, workload=prepared.workload,
            space=prepared.space,
            baseline=baseline_settings(prepared.registry, prepared.hardware, prepared.workload),
            storage_url=prepared.storage_url, logs_dir=trial_logs(prepared.spec.name),
        )

    @property
    def searched(self) -> set[str]:
        """The knobs the space searches."""
        return {p.name for p in self.space.params}


class StudyState:
    """What one runner's trials share and change: the Optuna study, the target (set by the
    baseline, or waited for from another runner's) and why the study cannot go on. Optuna runs
    trials in worker threads (--workers), so each change is made under one lock."""

    def __init__(self, objective: "Objective", target: float | None) -> None:
        self._lock = threading.Lock()
        self._objective = objective
        self._study: "optuna.Study | None" = None
        self._target = target
        self._fatal: str | None = None

    @property
    def study(self) -> "optuna.Study":
        if self._study is None:
            raise RuntimeError("the study is not open yet (StudyRunner.open)")
        return self._study

    def opened(self, study: "optuna.Study") -> None:
        with self._lock:
            self._study = study

    @property
    def is_open(self) -> bool:
        return self._study is not None

    @property
    def target(self) -> float | None:
        return self._target

    def set_target(self, target: float | None) -> None:
        with self._lock:
            self._target = target

    @property
    def fatal(self) -> str | None:
        """Why the study cannot go on (a baseline that keeps failing, a storage replaced)."""
        return self._fatal

    def fail(self, reason: str) -> None:
        """Stop the study for `reason`; the first reason stays, as it caused the rest."""
        with self._lock:
            if self._fatal is None:
                self._fatal = reason

    # what the trials add up to ------------------------------------------------------------------

    def best_trial(self) -> FrozenTrial | None:
        """The best feasible COMPLETE trial (autotune.storage.results.best_row); None for
        multi-objective studies, whose answer is the Pareto front."""
        if self._objective.multi:
            return None
        trials = self.study.get_trials(deepcopy=False)
        row = best_row(self.study, [row_from_frozen(t) for t in trials])
        return next(t for t in trials if t.number == row.number) if row is not None else None

    def best_value(self) -> float | None:
        best = self.best_trial()
        return best.value if best is not None else None

    def baseline_trial(self) -> FrozenTrial | None:
        finished = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")]
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        return (complete or finished or [None])[0]
