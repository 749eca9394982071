"""Watching one running trial from the study's side: each validation reported to Optuna and
judged for pruning, and each progress report passed on to the local store, the events and the
shared storage."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from autotune.storage.local import Store
    from autotune.study.context import StudyState, TrialContext
    from autotune.study.events import StudyEvents

# How often a running trial's "live" user attr (what other machines see of it) is rewritten.
LIVE_INTERVAL = 5.0
# The least margin by which a trial must be slower than the best before it is pruned for it:
# two runs of one configuration on an idle machine differ by a few percent.
MIN_NOISE_MARGIN = 0.10
MAX_NOISE_MARGIN = 1.0


def noise_margin(baseline: "optuna.trial.FrozenTrial | None") -> float:
    """How much slower than the best a trial may be before the slower-than-best rule prunes it:
    the spread of the baseline's own step times, (p95 - p50) / p50, which is how much the
    machine's load moved its steps about (a busy machine's is large), between MIN_NOISE_MARGIN
    and MAX_NOISE_MARGIN."""
    attrs = baseline.user_attrs if baseline is not None else {}
    p50, p95 = attrs.get("step_time_p50"), attrs.get("step_time_p95")
    if not p50 or p95 is None:
        return MIN_NOISE_MARGIN
    return min(MAX_NOISE_MARGIN, max(MIN_NOISE_MARGIN, (p95 - p50) / p50))


def beyond(seconds: float, best: float | None, margin: float) -> bool:
    """Whether `seconds` without reaching the target is already slower than the best by more
    than the noise margin: a trial within the noise of the best may still turn out faster."""
    return best is not None and seconds > best * (1.0 + margin)


class TrialWatch:
    """The callbacks of one trial process (autotune.launch.trial_process.launch): `on_eval`
    answers "prune" (True) or "go on", and keeps why; `on_progress` records how far it is."""

    def __init__(self, trial: "optuna.Trial", is_baseline: bool, context: "TrialContext", state: "StudyState",
                 store: "Store", events: "StudyEvents") -> None:
        self.trial = trial
        self.is_baseline = is_baseline
        self.context = context
        self.store = store
        self.events = events
        self.state = state
        # the bar a trial is pruned against, as it stood when the trial started
        self.best = state.best_value()
        self.margin = noise_margin(state.baseline_trial())
        self.prune_reason: str | None = None
        self._live_written = -math.inf

    def on_eval(self, point: dict[str, Any]) -> bool:
        objective = self.context.objective
        value = objective.intermediate(point)
        if not objective.multi:
            self.trial.report(value, point["index"])
        if self.is_baseline:
            return False
        if objective.prunable and self.trial.should_prune():
            self.prune_reason = (
                f"pruned by the {self.context.spec.pruner} pruner after validation {point['index']} "
                f"({self.context.metric.name} {point['value']:.4g})"
            )
            return True
        if objective.prunes_slower_than_best and beyond(value, self.best, self.margin):
            assert self.best is not None
            self.prune_reason = (
                f"pruned: {value:.2f} s (projected) of training without reaching the target "
                f"{self.context.metric.bound(self.state.target)}, already slower than the best ({self.best:.2f} s) by "
                f"more than the noise margin (+{self.margin:.0%})"
            )
            return True
        return False

    def on_progress(self, progress: dict[str, Any]) -> None:
        number = self.trial.number
        self.store.trial_progress(
            self.context.spec.name, number, step=progress["step"], total_steps=progress["total_steps"],
            fraction=progress["fraction"], samples_per_s=progress["samples_per_s"],
            train_time=progress["train_time"], peak_memory_bytes=progress["peak_memory_bytes"],
        )
        self.events.emit("trial_progress", f"trial {number} at step {progress['step']}", number,
                         number=number, **progress)
        # What other machines see of this trial, through the shared storage: throttled,
        # since each write is a round trip to the database.
        now = time.monotonic()
        if now - self._live_written >= LIVE_INTERVAL:
            self._live_written = now
            self.trial.set_user_attr("live", {
                "samples_per_s": progress["samples_per_s"], "step": progress["step"],
                "fraction": progress["fraction"], "updated": time.time(),
            })
