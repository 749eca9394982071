"""What a running study tells the world: one event path, many listeners.

The runner emits each event once (`StudyEvents.emit`); every listener gets every event: the local
Store (which the terminal UI, `autotune logs --study` and other processes read), the line
reporter of a foreground `study start`, the daemon's log. A listener is any callable taking a
`StudyEvent`; one that raises is logged and does not stop the study.

Kinds, each with the `data` keys listeners may read:
- study_started, study_paused, study_resumed, study_stopped, study_failed: no data.
- study_finished: counts (complete, pruned, failed, surplus).
- target: target.
- trial_started: number, settings, baseline.
- trial_complete, trial_pruned, trial_failed: a finished trial: number, state, value, reason,
  settings, searched (the searched setting names), baseline, duration, done, total, best,
  new_best.
- trial_retried: number (a trial whose runner died; it runs again).
- new_best: number, value.
- confirming: which (baseline, best, or "baseline and best": an inference study's pair, timed
  together in one process), run, of. Not stored: progress only.
- explaining: step, of, knob (the path from the baseline to the best, autotune.study.ablation).
  Not stored: progress only.
- checking: label, run, of (the answer's checks after the search: riders, the systems stage, the
  run's length; autotune.study.answer). Not stored: progress only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from autotune.storage.local import Store

logger = logging.getLogger(__name__)

TRIAL_FINISHED = ("trial_complete", "trial_pruned", "trial_failed")
# Progress, not history: listeners see them, the Store does not keep them.
TRANSIENT = ("confirming", "explaining", "checking", "trial_progress")


@dataclass(frozen=True)
class StudyEvent:
    study: str
    kind: str
    message: str
    trial: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[StudyEvent], None]


class StudyEvents:
    """The study's one event path: `emit` hands each event to every listener, in order."""

    def __init__(self, study: str, listeners: Iterable[Listener] = ()) -> None:
        self.study = study
        self.listeners = list(listeners)

    def emit(self, kind: str, message: str, trial: int | None = None, **data: Any) -> None:
        event = StudyEvent(self.study, kind, message, trial, data)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not stop the study
                logger.exception("study %s: listener %r failed on %s", self.study, listener, kind)


class StoreRecorder:
    """Keeps every event but the transient ones in the local Store's events table."""

    def __init__(self, store: "Store") -> None:
        self.store = store

    def __call__(self, event: StudyEvent) -> None:
        if event.kind not in TRANSIENT:
            self.store.add_event(event.study, event.kind, event.message, event.trial)


class LogReporter:
    """The daemon's view: one log line per trial started, finished, confirmation run and pause."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log

    def __call__(self, event: StudyEvent) -> None:
        data, name = event.data, event.study
        if event.kind == "trial_started":
            self.log.info("study %s: trial %d started%s", name, data["number"], " (baseline)" if data.get("baseline") else "")
        elif event.kind in TRIAL_FINISHED:
            detail = data.get("reason") or data.get("value")
            self.log.info("study %s: trial %d %s (%s) [%s/%s]", name, data["number"], data["state"].lower(), detail,
                          data.get("done"), data.get("total"))
        elif event.kind == "confirming":
            self.log.info("study %s: confirming, %s run %d of %d", name, data["which"], data["run"], data["of"])
        elif event.kind in ("explaining", "checking"):
            self.log.info("study %s: %s", name, event.message)
        elif event.kind in ("study_paused", "study_resumed"):
            self.log.info("study %s: %s", name, event.kind.removeprefix("study_"))
