"""Studies handed to the daemon: validated completely, then put on the queue in the Store.

`study start --detach` writes a submission to the daemon's inbox folder (autotune.daemon.client);
the daemon claims it (renames it to .work), validates and queues it on a thread of its own, and
writes the reply next to it. Without a daemon the client calls `validate_and_queue` itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from autotune.errors import AutotuneError, UsageError
from autotune.home import write_atomic
from autotune.spec import StudySpec
from autotune.statuses import StudyStatus
from autotune.storage.local import Store
from autotune.daemon.files import DaemonError, DaemonPaths

if TYPE_CHECKING:
    from autotune.study.prepare import Prepared

logger = logging.getLogger(__name__)


def check_queueable(store: "Store", name: str) -> None:
    """A study that is already queued or running cannot be queued again."""
    row = store.get_study(name)
    if row is None:
        return
    status = row["status"]
    if status == "paused":
        raise UsageError(f"study '{name}' is paused; resume it with `autotune study resume {name}`")
    if status in (StudyStatus.QUEUED, StudyStatus.RUNNING, StudyStatus.STOPPING):
        raise UsageError(f"study '{name}' is already {status}; watch it with `autotune tui {name}`")


def queue_study(store: "Store", prepared: "Prepared") -> None:
    """Put a validated study on the daemon's queue (resuming it when the name exists)."""
    import optuna

    spec = prepared.spec
    check_queueable(store, spec.name)
    storage = prepared.storage
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name != spec.name:
            continue
        stored = summary.user_attrs.get("autotune", {})
        for key in ("workload", "objective"):
            if stored.get(key) not in (None, getattr(spec, key)):
                raise UsageError(
                    f"study '{spec.name}' exists with {key} '{stored[key]}', not '{getattr(spec, key)}'; "
                    f"pick another --name or `autotune study delete {spec.name}`"
                )
    store.put_study(
        spec.name, storage=prepared.storage_url, workload=spec.workload, space=str(spec.space),
        objective=spec.objective, n_trials=spec.n_trials, spec=spec.to_dict(), status="queued",
    )
    store.add_event(spec.name, "study_queued", f"study {spec.name} queued for the daemon")


def validate_and_queue(spec: "StudySpec") -> None:
    """Validate a spec completely (prepare) and put it on the queue; UsageError on bad input."""
    from autotune.study.prepare import prepare

    prepared = prepare(spec)
    store = Store()
    try:
        queue_study(store, prepared)
    finally:
        store.close()


def accept_submission(spec_data: dict[str, Any]) -> dict[str, Any]:
    """What the daemon does with a submitted spec: validate it and queue it."""
    spec = StudySpec.from_dict(spec_data)
    validate_and_queue(spec)
    logger.info("study %s: queued (%s, %d trials, budget %s)", spec.name, spec.workload, spec.n_trials,
                spec.budget_text)
    return {"name": spec.name, "status": "queued", "daemon_pid": os.getpid()}


class Inbox:
    """The daemon's side of submissions: claim each one, answer it on a thread of its own."""

    def __init__(self, paths: DaemonPaths, draining: Callable[[], bool], wake: threading.Event) -> None:
        self.paths = paths
        self.draining = draining
        self._wake = wake
        self._inbox_busy: set[str] = set()

    def check(self) -> None:
        try:
            entries = list(self.paths.inbox.glob("*.json"))
        except OSError:
            return
        for entry in entries:
            key = entry.stem
            if key in self._inbox_busy:
                continue
            work = entry.with_suffix(".work")
            try:
                os.replace(entry, work)  # claim it
            except OSError:
                continue
            self._inbox_busy.add(key)
            threading.Thread(target=self._handle_submission, args=(key, work), name=f"submit-{key[:8]}",
                             daemon=True).start()

    def _handle_submission(self, key: str, work: Path) -> None:
        reply: dict[str, Any]
        try:
            data = json.loads(work.read_text())
            if self.draining():
                raise DaemonError(f"the daemon (pid {os.getpid()}) is shutting down; run the command again "
                                  f"once it has stopped")
            reply = {"ok": True, **accept_submission(data["spec"])}
        except AutotuneError as exc:
            reply = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
        except Exception as exc:
            logger.exception("submission %s failed", key)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "exit_code": 1}
        try:
            write_atomic(work.with_suffix(".reply"), json.dumps(reply))
        finally:
            work.unlink(missing_ok=True)
            self._inbox_busy.discard(key)
            self._wake.set()




def clean_inbox(paths: DaemonPaths) -> None:
    """Leftovers from a previous daemon: unanswered claims go back to the inbox; old replies go."""
    for entry in paths.inbox.glob("*"):
        try:
            if entry.suffix == ".work":
                os.replace(entry, entry.with_suffix(".json"))
            elif entry.suffix == ".reply" and time.time() - entry.stat().st_mtime > 300:
                entry.unlink()
        except OSError:
            pass
