"""The one protocol between a launching process and the processes it starts: a trial process
(autotune.launch.trial_process) and the processes of a data-parallel run (autotune.run.distributed).

Over a Pipe, child -> parent: ("progress", dict) and ("eval", dict), the latter answered by the
parent with "continue" or "prune"; then exactly one of ("result", dict) or ("error", message).
Torch-free: it only moves plain data.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent dies, so no trial (or one of a trial's
    data-parallel processes) outlives the process that started it."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


def redirect_output(log_path: str | None) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `log_path` (0o600)."""
    if not log_path:
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def describe_exit(exitcode: int | None, who: str = "trial process") -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        signum = -exitcode
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        hint = {
            "SIGKILL": " (killed: out of memory, or by a user)",
            "SIGSEGV": " (segmentation fault)",
            "SIGABRT": " (aborted)",
            "SIGBUS": " (bus error)",
        }.get(name, "")
        return f"{who} died from {name}{hint}"
    return f"{who} exited with code {exitcode} before reporting a result"


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# the child's side ----------------------------------------------------------------------------


class PipeReporter:
    """The engine's on_eval / on_progress callbacks, inside a child: they report over the pipe."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def on_eval(self, point: Any) -> bool:
        self.conn.send(("eval", asdict(point)))
        return self.conn.recv() == "prune"

    def on_progress(self, progress: Any) -> None:
        self.conn.send(("progress", asdict(progress)))


def serve(conn: Any, work: Callable[[PipeReporter], dict[str, Any]]) -> None:
    """A child's body: run `work`, send its result, or the error that stopped it (anything at all,
    SystemExit from a plugin included) with its traceback printed to the child's output."""
    # The launching process handles Ctrl-C; a child stops when told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        conn.send(("result", work(PipeReporter(conn))))
    except BaseException as exc:
        traceback.print_exc()
        try:
            conn.send(("error", describe_error(exc)))
        except (BrokenPipeError, OSError):
            pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


# the parent's side ---------------------------------------------------------------------------


def relay(
    conn: Any,
    kind: str,
    payload: Any,
    on_eval: Callable[[dict[str, Any]], bool | None] | None,
    on_progress: Callable[[dict[str, Any]], None] | None,
) -> bool:
    """Pass a child's "progress" or "eval" message to the parent's callbacks, answering an eval
    (a child waits for the answer). False for any other kind: the caller handles it."""
    if kind == "progress":
        if on_progress is not None:
            on_progress(payload)
        return True
    if kind == "eval":
        prune = bool(on_eval(payload)) if on_eval is not None else False
        conn.send("prune" if prune else "continue")
        return True
    return False
