"""A database file that cannot be read: which errors mean damage, and the one line that says so.

Every reader of autotune's two SQLite files (Optuna's studies.db, autotune's own autotune.db) turns
damage into `DataError(damaged(...))`: one line naming the file, exit code 1, and the file left as
it was (readers open files read-only, so nothing they do can change one).

What counts as damage:
- SQLite's own verdicts: SQLITE_CORRUPT ("database disk image is malformed", "malformed database
  schema") and SQLITE_NOTADB ("file is not a database");
- text that is not UTF-8 (sqlite3 raises "Could not decode to UTF-8 column ..."), a value that is
  not the JSON, state name or date it must be, and a table missing from a file that should hold
  it (a zero-length file, someone else's database): only a damaged or foreign file has them;
- any of these wrapped by SQLAlchemy (its `.orig`) or by Optuna (StorageInternalError, raised
  from SQLAlchemy's error).
What does not: a locked file, an unwritable folder, a query of ours that is wrong.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Callable, Iterator

import filelock

from autotune.errors import DataError

# What each file is called in the line, and what to do about it.
STUDY_STORAGE = ("the study storage", "restore it or move it aside")
LOCAL_STORE = ("autotune's database",
               "move it aside to start afresh (its studies' trials stay in their storage)")
REASON_CHARS = 160


def damaged(path: Path | None, exc: BaseException | str, file: tuple[str, str] = STUDY_STORAGE) -> str:
    """The one line for a database file that cannot be read."""
    what, fix = file
    while isinstance(exc, BaseException) and type(exc).__name__ == "StorageInternalError" and exc.__cause__:
        exc = exc.__cause__
    reason = exc if isinstance(exc, str) else str(getattr(exc, "orig", None) or exc)
    if isinstance(exc, json.JSONDecodeError):
        reason = f"a value that is not JSON: {reason}"
    first = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
    if len(first) > REASON_CHARS:  # sqlite3 quotes the whole text that is not UTF-8
        first = first[:REASON_CHARS] + "..."
    return f"{what} {path} is damaged ({first}); nothing was changed: {fix}"


def is_damage(exc: BaseException) -> bool:
    """Whether `exc` says the file is damaged (see the module docstring), not locked or misused."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
    if isinstance(orig, BaseException) and orig is not exc:
        return is_damage(orig)
    if type(exc).__name__ == "StorageInternalError" and exc.__cause__ is not None:
        return is_damage(exc.__cause__)  # Optuna's: "An exception is raised during the commit"
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
        return True
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError):
        return text.startswith(("Could not decode to UTF-8", "no such table", "malformed database schema"))
    # sqlite3 without error names (Python < 3.11) gives bare DatabaseErrors for both verdicts
    return type(exc) is sqlite3.DatabaseError and ("malformed" in text or "not a database" in text)


@contextlib.contextmanager
def reading(path: Path | None, file: tuple[str, str] = STUDY_STORAGE) -> Iterator[None]:
    """Reads of `path` inside this block raise DataError(damaged(...)) for damage; other errors
    pass through unchanged."""
    try:
        yield
    except DataError:
        raise
    except Exception as exc:
        if is_damage(exc):
            raise DataError(damaged(path, exc, file)) from None
        raise


def wait_for_creation(lock: Path, has_tables: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Whether a file without its tables gets them: a writer creates the file empty and then its
    tables under `lock`, so a reader that finds none waits for that lock once and looks again.
    No lock file means no writer ever started: the file is empty or foreign for good."""
    if not lock.exists():
        return False
    try:
        with filelock.FileLock(lock, timeout=timeout):
            return has_tables()
    except (filelock.Timeout, OSError):
        return has_tables()
