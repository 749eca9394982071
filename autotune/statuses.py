"""The words a study and a trial are described by, defined once.

Torch-free and Optuna-free: the store, the readers, the runner, the CLI and the terminal UI all
use these. Values are plain strings (a `str` Enum) so they compare equal to what the databases
hold and serialize to JSON as themselves.
"""

from __future__ import annotations

from enum import Enum


class _Words(str, Enum):
    def __str__(self) -> str:  # "running", not "StudyStatus.RUNNING", in messages and f-strings
        return str(self.value)


class StudyStatus(_Words):
    """A study's state in autotune's local database (`studies.status`)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"


class RunStatus(_Words):
    """How one trial's run ended: user attr `autotune_status` of its Optuna trial."""

    OK = "ok"
    PRUNED = "pruned"
    DIVERGED = "diverged"
    FAILED = "failed"  # the run raised
    OOM = "oom"
    UNSUPPORTED = "unsupported"
    CRASHED = "crashed"  # the trial process died without a result
    ERROR = "error"  # the trial process could not run the engine
    KILLED = "killed"  # stopped on request (user, forced daemon shutdown)
    STALLED = "stalled"  # made no progress for too long (stopped, deadlocked): killed by the watchdog
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM of the runner; runs again on resume
    STALE = "stale"  # its runner process died; retried
    INFEASIBLE = "infeasible"  # never ran: at or above a batch size that ran out of memory
    SURPLUS = "surplus"  # never ran: the study already had its count; does not count


STUDY_STATES: tuple[str, ...] = tuple(s.value for s in StudyStatus)
# A study some runner is (or will be) working on.
ACTIVE_STUDY_STATES: tuple[str, ...] = (
    StudyStatus.QUEUED, StudyStatus.RUNNING, StudyStatus.PAUSED, StudyStatus.STOPPING,
)
# Run statuses that fail the trial (Optuna state FAIL); "pruned" and "ok" are results.
FAILED_RUN_STATUSES: tuple[str, ...] = (
    RunStatus.FAILED, RunStatus.OOM, RunStatus.UNSUPPORTED, RunStatus.DIVERGED, RunStatus.CRASHED,
    RunStatus.ERROR, RunStatus.KILLED, RunStatus.STALLED,
)

# Optuna trial states by name, as the readers see them.
FINISHED_TRIAL_STATES: tuple[str, ...] = ("COMPLETE", "PRUNED", "FAIL")

# What a trial measured, recorded as user attrs of its Optuna trial: the one list the runner
# writes and every reader shows.
TRIAL_METRICS: tuple[str, ...] = (
    "throughput", "step_time_p50", "step_time_p95", "data_wait_fraction", "peak_memory_bytes",
    "val_loss", "val_accuracy", "nonzero_fraction", "wall_time", "train_time", "val_time", "time_to_target",
    "steps", "epochs", "metric_value", "metrics", "notes", "rates", "val_samples",
    "projected_time_to_target", "setup_time", "one_time", "step_time", "machine",
    # serving a trained model (inference studies, autotune.inference): latency of one call at
    # batch 1, the served model's size, the first calls of a compiled model, and the metric's
    # relative drop against the unoptimized model's (worse side positive), and its speed against
    # the unoptimized model timed beside it (what a study ranks serving trials by)
    "latency_p50", "latency_p95", "model_bytes", "compile_time", "metric_drop", "paired_speedup",
)
