"""What a study tunes: one module per task, each a subclass of `Task` (autotune.tasks.base).
Adding one is its module and a line in `TASKS`."""

from __future__ import annotations

from autotune.errors import UsageError
from autotune.tasks.base import BaselineTarget, Task, Verdict
from autotune.tasks.inference import Inference
from autotune.tasks.training import Training

__all__ = ["DEFAULT_TASK", "TASKS", "BaselineTarget", "Task", "Verdict", "get_task", "task_of"]

TASKS: dict[str, Task] = {t.name: t for t in (Training(), Inference())}
DEFAULT_TASK = Training.name


def get_task(name: str | None) -> Task:
    """The task called `name` (None: training, what a study tunes unless told otherwise)."""
    try:
        return TASKS[name or DEFAULT_TASK]
    except KeyError:
        raise UsageError(f"--task {name!r}: choose {' or '.join(TASKS)}") from None


def task_of(record: dict | None) -> Task:
    """The task of a stored study (its spec, or a summary, with a "task" key); an unknown name
    (a study written by a newer autotune) reads as training rather than failing a listing."""
    return TASKS.get((record or {}).get("task") or DEFAULT_TASK, TASKS[DEFAULT_TASK])
