"""Optuna's storage as autotune opens it: URLs, and queued trials taken exactly once."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import optuna

from autotune.storage.rdb import display_url, open_storage, sqlite_path


def test_two_threads_never_take_the_same_queued_trial(tmp_path: Path) -> None:
    """Regression (faults #5): `study start --workers 2` crashed with "Cannot tell a COMPLETE
    trial." when both threads of study.optimize(n_jobs=2) popped the same enqueued trial."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="race", storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    for i in range(40):
        study.enqueue_trial({"x": i})
    runs: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_int("x", 0, 100)
        with lock:
            runs[trial.number] += 1
        time.sleep(0.005)
        return float(x)

    study.optimize(objective, n_trials=40, n_jobs=2)
    assert set(runs.values()) == {1} and len(runs) == 40
    assert sorted(t.params["x"] for t in study.trials) == list(range(40))


def test_urls_for_messages_hide_the_password() -> None:
    assert display_url("postgresql://tuner:secret@db/autotune") == "postgresql://tuner:***@db/autotune"
    assert display_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert sqlite_path("sqlite:////tmp/a.db") == Path("/tmp/a.db")
    assert sqlite_path("postgresql://db/x") is None
