"""Other processes on this machine: is a pid alive, and what is it running (through psutil)."""

from __future__ import annotations

import psutil


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and has not exited (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists, and belongs to another user
        return True


def cmdline(pid: int) -> list[str] | None:
    """The process's arguments; [] when it is gone or a zombie; None when they cannot be read."""
    try:
        return psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
    except psutil.AccessDenied:
        return None
