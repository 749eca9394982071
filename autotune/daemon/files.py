"""The daemon's files in one home, and telling whether a daemon runs there.

    $AUTOTUNE_HOME/daemon.pid        the daemon's pid, written atomically (tmp + os.replace)
    $AUTOTUNE_HOME/daemon.lock       locked for the daemon's lifetime: the real "one daemon" guard
    $AUTOTUNE_HOME/daemon.json       pid, workers, start time, and whether it is ready for work
    $AUTOTUNE_HOME/daemon-inbox/     submissions from `study start --detach`, validated by the daemon
    $AUTOTUNE_HOME/logs/daemon.log   rotating log; logs/daemon.out catches a detached daemon's stderr

A pidfile is trusted only when its pid is alive and runs an autotune daemon (a stale file, or a
pid the system reused, counts as no daemon). Cheap to import: no torch, no Optuna.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from autotune.errors import AutotuneError
from autotune.home import autotune_home, write_atomic
from autotune.processes import cmdline, pid_alive


class DaemonError(AutotuneError):
    """A daemon that is (or is not) running when the command needs the opposite, or one that failed."""

    exit_code = 1




@dataclass(frozen=True)
class DaemonPaths:
    """Where one home's daemon keeps its files."""

    home: Path

    @classmethod
    def current(cls) -> "DaemonPaths":
        return cls(autotune_home().absolute())

    @property
    def pidfile(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def lockfile(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def statefile(self) -> Path:
        return self.home / "daemon.json"

    @property
    def inbox(self) -> Path:
        return self.home / "daemon-inbox"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def log(self) -> Path:
        return self.logs / "daemon.log"

    @property
    def out(self) -> Path:
        return self.logs / "daemon.out"


def looks_like_daemon(pid: int) -> bool:
    """True when `pid` is alive and its command line is an autotune daemon (not a reused pid)."""
    if pid <= 0 or not pid_alive(pid):
        return False
    args = cmdline(pid)
    if args is None:  # cannot tell (another user's process): trust that it is alive
        return True
    return any("autotune" in a for a in args) and "daemon" in args


def read_pidfile(paths: DaemonPaths) -> int | None:
    try:
        text = paths.pidfile.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def running_pid(paths: DaemonPaths | None = None) -> int | None:
    """The pid of this home's daemon, or None when there is none (a stale pidfile counts as none)."""
    paths = paths or DaemonPaths.current()
    pid = read_pidfile(paths)
    if pid is None or pid == os.getpid() or not looks_like_daemon(pid):
        return None
    return pid


def read_state(paths: DaemonPaths) -> dict[str, Any]:
    try:
        return json.loads(paths.statefile.read_text())
    except (OSError, ValueError):
        return {}


def is_ready(paths: DaemonPaths, pid: int) -> bool:
    """The daemon `pid` has finished starting up and answers submissions."""
    state = read_state(paths)
    return state.get("pid") == pid and bool(state.get("ready"))




class PidLock:
    """daemon.lock held for the daemon's lifetime, plus the pidfile that names the holder."""

    def __init__(self, paths: DaemonPaths) -> None:
        self.paths = paths
        self.lock = filelock.FileLock(paths.lockfile, mode=0o600)

    def acquire(self) -> int | None:
        """Take the lock and write the pidfile; returns the pid of a stale pidfile it replaced."""
        try:
            self.lock.acquire(timeout=0)
        except filelock.Timeout:
            pid = read_pidfile(self.paths)
            where = f"pid {pid}" if pid is not None else "starting up"
            raise DaemonError(
                f"an autotune daemon is already running ({where}, home {self.paths.home}); "
                f"stop it with `autotune daemon stop`"
            ) from None
        stale = read_pidfile(self.paths)
        write_atomic(self.paths.pidfile, f"{os.getpid()}\n")
        return stale if stale != os.getpid() else None

    def release(self) -> None:
        if read_pidfile(self.paths) == os.getpid():
            self.paths.pidfile.unlink(missing_ok=True)
            self.paths.statefile.unlink(missing_ok=True)
        if self.lock.is_locked:
            self.lock.release(force=True)


def new_submission_id() -> str:
    return uuid.uuid4().hex
