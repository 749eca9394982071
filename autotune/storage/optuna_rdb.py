"""Optuna's RDBStorage, with the one fix autotune needs: taking a queued trial is atomic.

Optuna pops an enqueued (WAITING) trial by reading its state and then writing RUNNING; on
SQLite `SELECT ... FOR UPDATE` is not a lock, so two threads of one `study.optimize(n_jobs=2)`
(or two runners of one SQLite study) can both pop the same trial, both run it, and the second
to finish fails with "ValueError: Cannot tell a COMPLETE trial." (reproduced in 3 of 3 runs of
40 enqueued trials with n_jobs=2). Here that transition runs under a lock: a thread lock always,
and for SQLite files also a file lock beside the database, which covers every process of this
machine (SQLite is single-machine). Other databases lock the row themselves.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import filelock
import optuna
from optuna.trial import TrialState

_POP_LOCK = threading.Lock()


class RDBStorage(optuna.storages.RDBStorage):
    def __init__(self, url: str, *args: Any, sqlite_file: Path | None = None, **kwargs: Any) -> None:
        super().__init__(url, *args, **kwargs)
        self._sqlite_file = sqlite_file
        self._pop_file_lock = _pop_lock(sqlite_file)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state != TrialState.RUNNING:
            return super().set_trial_state_values(trial_id, state, values)
        with _POP_LOCK:
            if self._pop_file_lock is None:
                return super().set_trial_state_values(trial_id, state, values)
            with self._pop_file_lock:
                return super().set_trial_state_values(trial_id, state, values)

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state.pop("_pop_file_lock", None)  # a lock is this process's: rebuilt by whoever unpickles
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._pop_file_lock = _pop_lock(self._sqlite_file)


def _pop_lock(sqlite_file: Path | None) -> filelock.FileLock | None:
    if sqlite_file is None:
        return None
    return filelock.FileLock(sqlite_file.with_name(sqlite_file.name + ".pop.lock"), mode=0o600)
