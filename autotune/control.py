"""Steering a study from outside its runner: pause, resume, stop, kill a trial.

The CLI (`autotune study pause|resume|stop`) and the terminal UI (p, s, k) both act through here,
so they allow the same transitions and leave the same event. A runner sees a change at its next
check (after each trial; a kill request within a fraction of a second).
"""

from __future__ import annotations

from autotune.errors import UsageError
from autotune.statuses import StudyStatus
from autotune.storage.local import Store

# status asked for -> the statuses it may be asked from
ALLOWED = {
    StudyStatus.PAUSED: (StudyStatus.RUNNING, StudyStatus.QUEUED),
    StudyStatus.RUNNING: (StudyStatus.PAUSED,),
    StudyStatus.STOPPING: (StudyStatus.RUNNING, StudyStatus.PAUSED, StudyStatus.QUEUED),
}
VERBS = {StudyStatus.PAUSED: "pause", StudyStatus.RUNNING: "resume", StudyStatus.STOPPING: "stop"}


def set_status(store: Store, name: str, status: StudyStatus) -> str:
    """Move study `name` to `status` (paused, running to resume, stopping). UsageError naming
    the study and its status when the move is not allowed; returns the new status."""
    row = store.get_study(name)
    if row is None:
        raise UsageError(f"no study '{name}' (see autotune study list)")
    if row["status"] not in ALLOWED[status]:
        raise UsageError(f"cannot {VERBS[status]} study '{name}': it is {row['status']}")
    # resuming keeps the runner's pid: the runner that paused is the one that resumes
    store.set_study_status(name, status, pid=row.get("pid") if status == StudyStatus.RUNNING else None)
    word = "resumed" if status == StudyStatus.RUNNING else str(status)
    store.add_event(name, f"study_{status}", f"study {word} by the user")
    return str(status)


def pause(store: Store, name: str) -> str:
    return set_status(store, name, StudyStatus.PAUSED)


def resume(store: Store, name: str) -> str:
    return set_status(store, name, StudyStatus.RUNNING)


def stop(store: Store, name: str, kill: bool = False) -> str:
    """Stop after the running trials (at once, killing them, with `kill`)."""
    status = set_status(store, name, StudyStatus.STOPPING)
    if kill:
        store.request_kill(name)
    return status


def toggle_pause(store: Store, name: str) -> str:
    """Pause a running or queued study, resume a paused one (the UI's one key for both)."""
    return resume(store, name) if store.study_status(name) == StudyStatus.PAUSED else pause(store, name)


def kill_trial(store: Store, name: str, number: int | None = None) -> int:
    """Kill running trial `number` (the latest one when None); returns its number. UsageError
    when no trial of the study is running."""
    live = [row["number"] for row in store.live_trials(name)]
    if not live:
        raise UsageError(f"study '{name}': no trial is running")
    target = number if number in live else live[-1]
    store.request_kill(name, target)
    return target
