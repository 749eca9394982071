"""Optuna's RDB storage: URLs, opening with heartbeats, and the SQLite settings that keep concurrent
readers and writers out of each other's way. Torch-free, and Optuna is imported only to open one
(the readers use the URL helpers)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import filelock

from autotune.errors import DataError, UsageError
from autotune.storage.damage import damaged, is_damage
from autotune.home import autotune_home, private_file

if TYPE_CHECKING:
    import optuna


def display_url(url: str) -> str:
    """A storage URL fit for messages: the password masked."""
    if "@" not in url:  # no user info, so no password (and no SQLAlchemy import for SQLite)
        return url
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


def open_storage(url: str) -> "optuna.storages.RDBStorage":
    """Optuna RDB storage with heartbeats; SQLite files get WAL and a generous busy timeout, and
    queued trials are taken atomically (autotune.storage.optuna_rdb)."""
    import optuna

    from autotune.storage.optuna_rdb import RDBStorage

    engine_kwargs: dict[str, Any] = {}
    interval, grace = heartbeat_settings()
    url = with_password(sqlalchemy_url(url))
    path = sqlite_path(url)
    schema_lock: Any = contextlib.nullcontext()
    try:
        if path is not None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            engine_kwargs = {"connect_args": {"timeout": 30}}
            # Optuna creates its tables on first open; two processes doing it at once on a new
            # file collide ("UNIQUE constraint failed: alembic_version.version_num"). The file is
            # created under the same lock, so a reader that finds it without tables can wait for
            # them (damage.wait_for_creation) instead of calling it damaged.
            schema_lock = filelock.FileLock(path.with_name(path.name + ".schema.lock"), mode=0o600)
        with schema_lock, _quiet_experimental():
            if path is not None:
                private_file(path)
                with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                    conn.execute("PRAGMA journal_mode=WAL")
            return RDBStorage(
                url,
                sqlite_file=path,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except UsageError:
        raise
    except Exception as exc:
        raise _open_error(url, path, exc) from None


def open_for_reading(url: str) -> "optuna.storages.RDBStorage":
    """Optuna's storage for reading only: no tables created, no WAL set, no heartbeats; a SQLite
    file is opened read-only, so not even Optuna can write to it. For storages the direct reader
    (optuna_sqlite) does not read: other databases, and SQLite files of other schema versions."""
    import optuna

    url = with_password(sqlalchemy_url(url))
    path = sqlite_path(url)
    engine_url = url
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        # SQLite's URI filename: the file read-only (SQLAlchemy passes `uri=true` on to sqlite3)
        engine_url = f"sqlite:///{path.resolve().as_uri()}?mode=ro&uri=true"
        engine_kwargs = {"connect_args": {"timeout": 30}}
    try:
        with _quiet_experimental():
            return optuna.storages.RDBStorage(engine_url, engine_kwargs=engine_kwargs, skip_table_creation=True)
    except Exception as exc:
        raise _open_error(url, path, exc) from None


def _open_error(url: str, path: Path | None, exc: Exception) -> Exception:
    """Damage is a DataError naming the file; anything else (locked, unreachable, refused) a
    UsageError naming the storage."""
    if path is not None and is_damage(exc):
        return DataError(damaged(path, exc))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(f"cannot open storage {display_url(url)}: {first}")


# Passwords given on a command line in this process, by the URL without them: a study handed to
# the daemon keeps its password for the daemon's lifetime without it being written anywhere.
_passwords: dict[str, str] = {}


def without_password(url: str) -> str:
    """The URL with any password removed (what autotune stores), remembering the password."""
    if "@" not in url:
        return url
    try:
        from sqlalchemy.engine import URL, make_url

        parsed = make_url(url)
    except Exception:
        return url
    if parsed.password is None:
        return url
    bare = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                      parsed.query).render_as_string(hide_password=False)
    _passwords[bare] = url
    return bare


def with_password(url: str) -> str:
    """A stored URL with its password back: from AUTOTUNE_STORAGE when that names the same
    database, else one this process was given, else as it is (libpq still reads PGPASSWORD
    and ~/.pgpass)."""
    if "@" not in url:
        return url
    given = os.environ.get("AUTOTUNE_STORAGE")
    if given and without_password(sqlalchemy_url(given)) == url:
        return sqlalchemy_url(given)
    return _passwords.get(url, url)


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    # Heartbeats are marked experimental in Optuna; autotune depends on them on purpose.
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield

