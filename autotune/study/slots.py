"""Several runners sharing one study, on one machine or many: the rules that keep their trials
counted exactly once (`autotune worker` itself is autotune.study.worker).

A study in a shared storage (PostgreSQL) can be run by any number of runners at once:
`autotune study start` where it was created, `autotune worker` anywhere else, each running one
or more trials at a time. They coordinate only through the storage:

- **Slots.** A study has `n_trials` slots. A trial trains only after it has claimed one:
  `claim()` takes a short cross-runner lock (a PostgreSQL advisory lock, a file lock for SQLite)
  and grants the slot when `counted + claimed + reserved < n_trials`, where `counted` are
  finished trials that count (`counted_trials`, the rule of autotune.storage.results.done_count), `claimed` are RUNNING trials holding a
  slot (user attr `slot` equal to their own number) and `reserved` are trials that must run
  whatever happens: WAITING ones (the baseline, retries, enqueued trials) and such trials
  already popped but not yet claimed. So the count can never overshoot, and the baseline or a
  retry can never be crowded out by a fresh trial.
- **Waiting, not spinning.** Between trials a runner waits while every slot is taken
  (`wait_for_slot()`), checking the others' heartbeats meanwhile (`fail_stale_trials`), and
  stops once the study has its count. A trial that lost the race for the last slot anyway is
  recorded PRUNED with autotune_status "surplus" without training, and does not count.
- **The target.** Objectives that need a target accuracy take it from the baseline; a trial
  that starts while the baseline (perhaps on another machine) is still running waits for it
  (`wait_for_target()`) before claiming a slot.
- **Dead runners.** Optuna heartbeats mark a trial whose runner stopped beating FAIL after the
  grace period, and RetryHeartbeatStaleTrialCallback re-enqueues it once (system attr
  `failed_trial`); the FAIL does not count, its retry does.

Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import filelock
import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.statuses import RunStatus
from autotune.storage.results import done_count
from autotune.storage.trial_row import row_from_frozen

logger = logging.getLogger(__name__)

SLOT_ATTR = "slot"
SURPLUS = RunStatus.SURPLUS
POLL_SECONDS = 1.0


def counted_in(trials: list[FrozenTrial]) -> int:
    """Trials that count toward --n-trials (autotune.storage.results.done_count)."""
    return done_count([row_from_frozen(t) for t in trials])


def counted_trials(study: optuna.Study) -> int:
    return counted_in(study.get_trials(deepcopy=False))


def is_priority(t: FrozenTrial) -> bool:
    """A trial that must run whatever happens: the baseline, a retry, or one enqueued by hand."""
    return bool(
        t.user_attrs.get("baseline") or t.user_attrs.get("retry_of") is not None
        or "failed_trial" in t.system_attrs or "fixed_params" in t.system_attrs
    )


def holds_slot(t: FrozenTrial) -> bool:
    # A retry copies its failed trial's user attrs, slot included: only a slot naming the trial
    # itself is held.
    return t.state == TrialState.RUNNING and t.user_attrs.get(SLOT_ATTR) == t.number


def fail_stale(study: optuna.Study) -> None:
    """Optuna's heartbeat check: dead runners' RUNNING trials become FAIL and are retried once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class StudySlots:
    """Keeps every runner of one study to exactly `n_trials` counted trials. Thread-safe."""

    def __init__(self, storage: Any, study_name: str, n_trials: int, poll: float = POLL_SECONDS) -> None:
        self.storage = storage
        self.study_name = study_name
        self.n_trials = n_trials
        self.poll = poll
        self._thread_lock = threading.Lock()

    # the cross-runner lock --------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """A critical section shared by every runner of this study, on any machine."""
        with self._thread_lock:
            engine = getattr(self.storage, "engine", None)
            dialect = engine.dialect.name if engine is not None else ""
            if dialect == "postgresql":
                with _pg_lock(engine, self.study_name):
                    yield
            elif dialect == "mysql":
                with _mysql_lock(engine, self.study_name):
                    yield
            elif dialect == "sqlite" and engine.url.database not in (None, "", ":memory:"):
                with _file_lock(Path(engine.url.database).with_suffix(".autotune-slots.lock")):
                    yield
            else:  # in-memory or unknown: one process, the thread lock is enough
                yield

    # decisions --------------------------------------------------------------------------------

    def _tally(self, trials: list[FrozenTrial], me: int | None) -> tuple[int, int, int]:
        counted = counted_in(trials)
        claimed = sum(1 for t in trials if t.number != me and holds_slot(t))
        reserved = sum(
            1 for t in trials
            if t.number != me and (
                t.state == TrialState.WAITING
                or (t.state == TrialState.RUNNING and not holds_slot(t) and is_priority(t))
            )
        )
        return counted, claimed, reserved

    def claim(self, study: optuna.Study, trial: optuna.Trial) -> bool:
        """Give `trial` one of the study's slots, or return False: it must not train."""
        with self.locked():
            trials = study.get_trials(deepcopy=False)
            me = next((t for t in trials if t.number == trial.number), None)
            counted, claimed, reserved = self._tally(trials, trial.number)
            if me is not None and is_priority(me):
                reserved = 0  # a reservation is ours to take
            if counted + claimed + reserved >= self.n_trials:
                return False
            trial.set_user_attr(SLOT_ATTR, trial.number)
            return True

    def wait_for_slot(self, study: optuna.Study, should_stop: Callable[[], bool]) -> bool:
        """Between trials: True when a slot is free (or a reserved trial waits to be run),
        False when the study has its count or a stop was asked for."""
        while not should_stop():
            trials = study.get_trials(deepcopy=False)
            counted, claimed, reserved = self._tally(trials, None)
            if counted >= self.n_trials:
                return False
            if any(t.state == TrialState.WAITING for t in trials):
                return True  # the next ask takes it, and it has a reservation
            if counted + claimed + reserved < self.n_trials:
                return True
            # Every remaining slot belongs to a trial in flight; if its runner died, the
            # heartbeat check fails it and re-enqueues it, and this runner picks it up.
            logger.debug("study %s: %d counted, %d in flight, %d reserved of %d: waiting",
                         self.study_name, counted, claimed, reserved, self.n_trials)
            fail_stale(study)
            time.sleep(self.poll)
        return False

    def wait_for_target(self, study: optuna.Study, should_stop: Callable[[], bool]) -> float | None:
        """The target accuracy, once the baseline has set it. None when no baseline is pending
        (it finished without setting one) or a stop was asked for. Raises GiveWay when the
        baseline waits for a runner (a retry of one that died): this trial must make room."""
        while not should_stop():
            target = study.user_attrs.get("target")
            if target is not None:
                return float(target)
            pending = [
                t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
                if t.user_attrs.get("baseline")
            ]
            if not pending:
                return None
            if all(t.state == TrialState.WAITING for t in pending):
                raise GiveWay(f"not run: made way for the baseline (trial {pending[0].number})")
            fail_stale(study)
            time.sleep(self.poll)
        return None


class GiveWay(Exception):
    """This trial must not train: a trial that has to run first waits for a runner."""


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key for advisory locks, from the study name."""
    digest = hashlib.blake2b(f"autotune-slots:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def _pg_lock(engine: Any, name: str) -> Iterator[None]:
    from sqlalchemy import text

    # Transaction-scoped: released at commit, and by the server if this process dies.
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(name)})
        yield


@contextlib.contextmanager
def _mysql_lock(engine: Any, name: str) -> Iterator[None]:
    from sqlalchemy import text

    lock = f"autotune-{_lock_key(name):x}"[:64]
    with engine.connect() as conn:
        conn.execute(text("SELECT GET_LOCK(:name, 600)"), {"name": lock})
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock})


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # SQLite is single-machine, so a file lock next to the database covers every runner.
    with filelock.FileLock(path, mode=0o600):
        yield
