"""What the terminal UI polls, computed off the UI thread. No Textual here.

`Watcher.poll(target)` returns a `Snapshot` of what changed since the last poll for the same
target: for a study, only trial rows that are new or changed (reading.trial_rows is incremental),
events after the last id, live trials, and the derived views (best so far, Pareto points) only when
the set of finished trials changed. Polls for one Watcher never run concurrently (a lock).

A study whose store row exists but whose Optuna study does not yet (queued behind another, or the
daemon is creating it) is not an error: its update has no rows, says why (`waiting`) and where it
is in the daemon's queue (`queue`). The first update that finds the study starts the view over
(`reset`), so the screen drops what it showed while waiting.

A big study opens in two polls: reading all of a 10,000-trial study takes most of a second, so
the first poll of a view whose rows are not cached brings only the newest `first_page` rows
(`reading` holds the trial count, and there is no summary yet) and the next one, which the app
asks for at once, starts the view over with all of them. Rows are read without their log tails
(up to 4,000 characters a trial); the trial screen reads a finished trial's when it opens.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Hashable

import psutil

from autotune.metrics import Metric
from autotune.statuses import ACTIVE_STUDY_STATES
from autotune.storage import reading, results
from autotune.errors import AutotuneError, UsageError
from autotune.storage.reading import StudyLike
from autotune.storage.trial_row import TrialRow
from autotune.storage.local import Store
from autotune.daemon.queue import QueuePlace, queue_place
from autotune.tasks import task_of

EVENTS_TAIL = 200
_poll_keys = itertools.count(1)


def new_poll_key() -> int:
    """A key for one view (screen instance): polls for a new key start from scratch."""
    return next(_poll_keys)


@dataclass
class StudyUpdate:
    """One study's changes since the previous poll of the same target."""

    name: str
    summary: dict[str, Any]
    attrs: dict[str, Any]
    hardware: dict[str, Any]
    new_rows: list[TrialRow]
    changed_rows: list[TrialRow]
    total_rows: int
    best_so_far: list[tuple[int, float]] | None  # None: unchanged since the last poll
    pareto: tuple[list[TrialRow], list[TrialRow]] | None  # (front, all complete); None: unchanged
    live: list[dict[str, Any]]
    events: list[dict[str, Any]]
    complete_count: int
    reset: bool  # first update for this target, or first since the study appeared: start from empty
    queue: QueuePlace | None = None  # set while the store row says queued
    waiting: str | None = None  # why there is nothing to show yet; None once the Optuna study exists
    # a big study's first update: its trial count; new_rows are only the newest, the summary is the
    # store row's, and the next poll starts the view over with every row
    reading: int | None = None
    # an inference study's Pareto front of latency vs metric drop (results.inference_front), fastest
    # first; None: unchanged, or not an inference study
    latency_front: list[TrialRow] | None = None


@dataclass
class Snapshot:
    studies: list[dict[str, Any]]  # the store's rows, oldest first
    lines: dict[str, dict[str, Any]] | None = None  # name -> summary (studies list target only)
    study: StudyUpdate | None = None
    system: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # study name -> why it cannot be read
    took: float = 0.0


class Watcher:
    """Reads the Store and the studies' Optuna storages for the UI."""

    def __init__(self, store_path: str | Path | None = None, first_page: int = 500) -> None:
        """`first_page`: how many of a big study's newest rows its first poll brings (0: all)."""
        # read-only, used only by polls (one at a time): a poll never writes, not even to a damaged file
        self.store = Store(store_path, read_only=True)
        self.first_page = first_page
        self._lock = threading.Lock()
        self._studies: dict[str, tuple[tuple[Any, Any], StudyLike]] = {}
        self._target: Hashable = None
        self._waiting = False  # the last update was for a study not in its storage yet
        self._partial = False  # the last update was a first page (`reading`): the next starts over
        self._shown: dict[int, TrialRow] = {}
        self._last_event_id = 0
        self._finished_count = -1
        self._derived_cache: tuple[Any, ...] | None = None
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def study(self, name: str, store_row: dict[str, Any] | None = None) -> StudyLike:
        """The study behind a store row, opened once (its row cache lives on the object); a
        reading.SqliteStudy for SQLite storages, so the UI never loads SQLAlchemy.

        Reopened when the row's storage or creation time changes (deleted and started again).
        """
        row = store_row or self.store.get_study(name)
        if row is None:
            raise self._unknown(name)
        key = (row["storage"], row.get("created_at"))
        cached = self._studies.get(name)
        if cached is None or cached[0] != key:
            cached = self._studies[name] = (key, reading.open_view(row["storage"], name, with_log_tails=False))
        return cached[1]

    def poll(self, name: str | None, target: Hashable = None) -> Snapshot:
        """Snapshot for the studies list (name None) or one study; `target` identifies the view.

        A new target starts over: every row comes back as new and the event log from its tail.
        """
        started = time.perf_counter()
        with self._lock:
            studies = self.store.list_studies()
            snap = Snapshot(studies=studies, system=_system())
            if name is None:
                snap.lines = {}
                names: dict[str, list[str]] = {}  # storage -> its studies, read once a poll
                for row in studies:
                    try:
                        if not self._in_storage(row, names):
                            continue  # queued: the list shows the store row and its place
                        study = self.study(row["name"], row)
                        snap.lines[row["name"]] = results.summary(study, row)
                    except Exception as exc:  # one unreadable study must not blank the list
                        snap.errors[row["name"]] = one_line(exc)
            else:
                row = next((r for r in studies if r["name"] == name), None)
                try:
                    snap.study = self._study_update(name, row, studies, target)
                except Exception as exc:
                    snap.errors[name] = one_line(exc)
        snap.took = time.perf_counter() - started
        return snap

    def _study_update(
        self, name: str, store_row: dict[str, Any] | None, studies: list[dict[str, Any]], target: Hashable,
    ) -> StudyUpdate:
        if store_row is None:
            raise self._unknown(name)
        waiting = not self._in_storage(store_row)
        study = None if waiting else self.study(name, store_row)  # may raise: then the next poll starts over again
        reset = target != self._target or waiting != self._waiting or self._partial
        # a first page only for a view's first update, never twice in a row
        page = study is not None and reset and not self._partial and self.first_page
        first = reading.latest_rows(study, self.first_page) if page else None
        partial = first is not None and first[1] > self.first_page
        rows = reading.trial_rows(study) if study is not None and not partial else []
        if reset:
            self._start_over(target, waiting, partial)
        events = self._new_events(name, reset)
        queue = queue_place(studies, name)
        if partial:
            newest, total = first
            return StudyUpdate(
                name=name, summary=_waiting_summary(store_row), attrs={}, hardware={}, new_rows=newest,
                changed_rows=[], total_rows=total, best_so_far=None, pareto=None,
                live=self.store.live_trials(name), events=events, complete_count=0, reset=True,
                queue=queue, reading=total,
            )
        if study is None:
            return StudyUpdate(
                name=name, summary=_waiting_summary(store_row), attrs={}, hardware={}, new_rows=[],
                changed_rows=[], total_rows=0, best_so_far=None, pareto=None, live=[], events=events,
                complete_count=0, reset=reset, queue=queue, waiting=_why_waiting(store_row),
            )
        new_rows, changed_rows = self._new_and_changed(rows)
        user_attrs = study.user_attrs
        summary, complete_count, finished = self._derived(study, store_row, rows, user_attrs,
                                                          bool(new_rows or changed_rows or reset))
        best, pareto, latency_front = self._finished_views(study, rows, user_attrs, finished)
        return StudyUpdate(
            name=name,
            summary=summary,
            attrs=user_attrs.get("autotune") or {},
            hardware=user_attrs.get("hardware") or {},
            new_rows=new_rows,
            changed_rows=changed_rows,
            total_rows=len(rows),
            best_so_far=best,
            pareto=pareto,
            live=self.store.live_trials(name),
            events=events,
            complete_count=complete_count,
            reset=reset,
            queue=queue,
            latency_front=latency_front,
        )

    def _start_over(self, target: Hashable, waiting: bool, partial: bool) -> None:
        """A new view: every row comes back as new, the events from the log's tail."""
        self._target = target
        self._waiting = waiting
        self._partial = partial
        self._shown = {}
        self._last_event_id = 0
        self._finished_count = -1

    def _new_events(self, name: str, reset: bool) -> list[dict[str, Any]]:
        events = self._events_tail(name) if reset else self.store.events(name, after_id=self._last_event_id)
        if events:
            self._last_event_id = events[-1]["id"]
        return events

    def _new_and_changed(self, rows: list[TrialRow]) -> tuple[list[TrialRow], list[TrialRow]]:
        """The rows this view has not shown, and those that changed since it did; both are shown now."""
        new_rows, changed_rows = [], []
        shown = self._shown
        for row in rows:
            old = shown.get(row.number)
            if old is None:
                new_rows.append(row)
            elif old is not row and old != row:
                changed_rows.append(row)
            else:
                continue
            shown[row.number] = row
        return new_rows, changed_rows

    def _finished_views(
        self, study: StudyLike, rows: list[TrialRow], user_attrs: dict[str, Any], finished: int,
    ) -> tuple[list[tuple[int, float]] | None, tuple[list[TrialRow], list[TrialRow]] | None, list[TrialRow] | None]:
        """Best so far, the Pareto points and an inference study's latency front: recomputed only
        when the number of finished trials changed (None otherwise: the screen keeps its own)."""
        best = pareto = latency_front = None
        if finished != self._finished_count:
            self._finished_count = finished
            if task_of(user_attrs.get("autotune")).serves_model:
                by_number = {r.number: r for r in rows}
                latency_front = [by_number[n] for n in results.inference_front(rows)]
            if len(study.directions) == 1:
                best = results.best_so_far(study, rows)
            else:
                complete = [r for r in rows if r.state == "COMPLETE" and r.values]
                pareto = (results.pareto_front(study, rows), complete)
        return best, pareto, latency_front

    def _derived(self, study: StudyLike, store_row: dict[str, Any], rows: list[TrialRow],
                 user_attrs: dict[str, Any], changed: bool) -> tuple[dict[str, Any], int, int]:
        """The summary, complete and finished counts. Recomputed only when a row, the store row or
        the study's attrs changed: an idle poll of a 10,000-trial study would otherwise spend
        ~25 ms on them every second. In between, only the elapsed time moves on."""
        now = time.time()
        cached = self._derived_cache
        if not changed and cached is not None and cached[0] == len(rows) and cached[1] == store_row \
                and cached[2] == user_attrs:
            summary = dict(cached[3])
            if summary.get("elapsed") is not None and summary["state"] in ACTIVE_STUDY_STATES:
                summary["elapsed"] += now - cached[4]
            return summary, cached[5], cached[6]
        summary = results.summary(study, store_row, rows, now=now, user_attrs=user_attrs)
        complete = sum(1 for r in rows if r.state == "COMPLETE")
        finished = sum(1 for r in rows if r.finished)
        self._derived_cache = (len(rows), store_row, user_attrs, summary, now, complete, finished)
        return summary, complete, finished

    def _in_storage(self, row: dict[str, Any], names: dict[str, list[str]] | None = None) -> bool:
        """Whether the Optuna study behind a store row exists yet. Answered from the open study
        when a poll has one; else from the storage's study names (memoized in `names`), cheap for
        SQLite files and never creating one: opening a missing study would load SQLAlchemy to fail."""
        cached = self._studies.get(row["name"])
        if cached is not None and cached[0] == (row["storage"], row.get("created_at")):
            return True
        names = {} if names is None else names
        if row["storage"] not in names:
            names[row["storage"]] = reading.list_studies(row["storage"])
        return row["name"] in names[row["storage"]]

    def _unknown(self, name: str) -> UsageError:
        return UsageError(
            f"no study '{name}': {self.store.path} has no such study queued, running or finished "
            f"(start it with `autotune study start --name {name}`)"
        )

    def _events_tail(self, name: str) -> list[dict[str, Any]]:
        # A long study has tens of thousands of events; the pane shows the latest.
        return self.store.events_tail(name, EVENTS_TAIL)

    def opened(self, name: str) -> StudyLike | None:
        """The study as the last poll opened it, if any (safe from any thread)."""
        cached = self._studies.get(name)
        return cached[1] if cached else None

    def importances(self, name: str) -> dict[str, float]:
        """Parameter importances of a study a poll opened ({} otherwise). Slow on big studies:
        call it from its own worker, not every poll. Touches no Store connection."""
        study = self.opened(name)
        return results.importances(study) if study is not None else {}

    def close(self) -> None:
        self.store.close()


def _why_waiting(row: dict[str, Any]) -> str:
    """Why a study with a store row has no Optuna study, as the panels that stay empty say it."""
    status = row["status"]
    if status == "queued":
        return "waiting for the daemon to start this study"
    if status == "running":  # the daemon took it and is preparing it (imports, data, hardware)
        return "the daemon is starting this study"
    return f"{status} before it started" + (f": {row['error']}" if row.get("error") else "")


def _waiting_summary(row: dict[str, Any]) -> dict[str, Any]:
    """results.summary's keys for a study with no Optuna study yet: what its store row and spec say."""
    spec = row.get("spec") or {}
    budget = spec.get("budget")
    # the metric as far as the spec tells before the workload is loaded: what --metric or
    # --target named, else the default (the study's own record replaces it once it runs)
    named = (spec.get("metric") or "").partition(":")[0] or spec.get("target_metric")
    metric = Metric.named(named, spec.get("target_direction")) if named else Metric()
    return {
        "name": row["name"], "state": row["status"], "task": task_of(spec).name,
        "guard": task_of(spec).guard({}, spec),  # nothing measured yet
        "objective": row.get("objective"), "directions": [],
        "workload": row.get("workload"), "metric": metric.describe(), "metric_info": metric.to_dict(),
        "target": spec.get("target"),
        "budget": ", ".join(f"{v} {k}" for k, v in budget.items()) if isinstance(budget, dict) else None,
        "device": spec.get("device"), "done": 0, "total": row.get("n_trials") or 0, "complete": 0,
        "pruned": 0, "failed": 0, "running": 0, "surplus": 0, "retried": 0, "best_number": None,
        "best_value": None, "best_values": None, "speedup": None, "confirmed_speedup": None,
        "confirmed_range": None, "confirmation": None, "why_faster": None, "noise": None, "speedups": None, "answer": None,
        "elapsed": None, "eta": None, "mean_trial_seconds": None,
    }


def _system() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpu_count": psutil.cpu_count(),
        "memory_used": memory.total - memory.available,
        "memory_total": memory.total,
    }


def one_line(exc: Exception) -> str:
    """What the UI shows for an error: autotune's own line as it is (a damaged file's names the
    file), anything else with its type."""
    text = str(exc).strip().splitlines()
    if isinstance(exc, AutotuneError) and text:
        return text[0]
    return f"{type(exc).__name__}: {text[0] if text else ''}"
