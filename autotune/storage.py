"""Optuna storage: URLs, opening with heartbeats, and the SQLite settings that keep concurrent
readers and writers out of each other's way. Torch-free (the CLI, the TUI and readers use it)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna

from autotune.errors import UsageError
from autotune.home import autotune_home


def display_url(url: str) -> str:
    """A storage URL fit for messages: the password masked."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def sqlalchemy_url(url: str) -> str:
    """`postgresql://...` with the driver that is installed.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; autotune's `postgres` extra installs
    psycopg2. Name psycopg2 explicitly when only it is there; any other URL is left alone.
    """
    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def default_storage_url() -> str:
    return f"sqlite:///{autotune_home() / 'studies.db'}"


def sqlite_path(storage_url: str) -> Path | None:
    """The file behind a `sqlite:///...` URL, or None for other storages."""
    if not storage_url.startswith("sqlite:///"):
        return None
    raw = storage_url[len("sqlite:///"):].split("?", 1)[0]
    return Path(raw) if raw and raw != ":memory:" else None


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds. AUTOTUNE_HEARTBEAT_GRACE shortens the grace period
    (tests); the interval stays well inside it so a slow beat is not taken for a death."""
    raw = os.environ.get("AUTOTUNE_HEARTBEAT_GRACE", "30")
    try:
        grace = int(raw)
    except ValueError:
        raise UsageError(f"AUTOTUNE_HEARTBEAT_GRACE={raw!r}: give whole seconds, e.g. 30") from None
    if grace < 3:
        raise UsageError(f"AUTOTUNE_HEARTBEAT_GRACE={grace}: must be at least 3 seconds")
    return min(5, grace // 3), grace


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with heartbeats; SQLite files get WAL and a generous busy timeout."""
    engine_kwargs: dict[str, Any] = {}
    interval, grace = heartbeat_settings()
    url = sqlalchemy_url(url)
    path = sqlite_path(url)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(path, timeout=30) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            engine_kwargs = {"connect_args": {"timeout": 30}}
        with _quiet_experimental():
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except UsageError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot open storage {display_url(url)}: {first}") from None


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    # Heartbeats are marked experimental in Optuna; autotune depends on them on purpose.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
