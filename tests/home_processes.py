"""The processes a test started for its AUTOTUNE_HOME: they inherit it, so each test can find
(and, failing, kill) everything it left running: runners, daemons, forkservers, trials,
DataLoader workers."""

from __future__ import annotations

import os
from pathlib import Path

import psutil


def processes_of(home: Path, *, under: bool = False) -> list[psutil.Process]:
    """Live processes whose AUTOTUNE_HOME is `home` (or, with `under`, any folder below it);
    this process and zombies aside."""
    found = []
    for proc in psutil.process_iter():
        try:
            value = proc.environ().get("AUTOTUNE_HOME", "")
            mine = value.startswith(str(home)) if under else value == str(home)
            if mine and proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def kill_all(procs: list[psutil.Process]) -> list[str]:
    """Kill `procs`; returns what they were running, for the failure message."""
    killed = []
    for proc in procs:
        try:
            killed.append(" ".join(proc.cmdline()[:4]))
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return killed
