"""autotune's own local state, in `$AUTOTUNE_HOME/autotune.db` through sqlite-utils (the `Store`).

Trial results live in Optuna's storage (they travel with the study). This database holds what only
this machine needs and what other local processes (CLI, terminal UI, daemon) watch:
- studies: the queue and each study's state (queued, running, paused, stopping, stopped, finished,
  failed) with the arguments it was started with;
- live_trials: one row per running trial, updated about twice a second (step, samples/s, memory),
  plus a kill request flag;
- events: an append-only log (trial started, pruned and why, failed and why, new best, ...).

Connections are opened per Store, in WAL mode with a generous busy timeout, so readers never block
the writer for long and nobody sees 'database is locked'. No torch, no Textual: the TUI uses this.

`Store(read_only=True)` is for readers (`study list/show/best/export`, the terminal UI's polls):
it opens the file read-only and never creates, migrates or switches it to WAL; a missing file
reads as empty until it appears. Damage (SQLite's verdict, a file without autotune's tables, JSON
that does not decode) is a DataError with the one "damaged" line, for readers and writers alike.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import filelock
import sqlite_utils
from sqlite_utils import Migrations

from autotune.errors import DataError, UsageError
from autotune.home import autotune_home, private_file
from autotune.storage.damage import LOCAL_STORE, damaged, is_damage, reading, wait_for_creation
from autotune.storage.rdb import without_password
from autotune.statuses import STUDY_STATES

migrations = Migrations("autotune")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    db["studies"].create(
        {
            "name": str,
            "storage": str,
            "workload": str,
            "space": str,
            "objective": str,
            "n_trials": int,
            "status": str,
            "spec": str,
            "error": str,
            "pid": int,
            "created_at": float,
            "updated_at": float,
            "started_at": float,
            "finished_at": float,
        },
        pk="name",
    )
    db["live_trials"].create(
        {
            "study": str,
            "number": int,
            "pid": int,
            "started_at": float,
            "updated_at": float,
            "step": int,
            "total_steps": int,
            "fraction": float,
            "samples_per_s": float,
            "train_time": float,
            "peak_memory_bytes": int,
            "settings": str,
            "kill_requested": int,
        },
        pk=("study", "number"),
    )
    db["events"].create(
        {"id": int, "ts": float, "study": str, "trial": int, "kind": str, "message": str},
        pk="id",
    )
    db["events"].create_index(["study", "id"])


@migrations()
def m002_kill_reason(db: sqlite_utils.Database) -> None:
    # A kill request says who asked: the user (TUI, CLI) or a forced daemon shutdown.
    db["live_trials"].add_column("kill_reason", str)


def default_path() -> Path:
    return autotune_home() / "autotune.db"


def connect(path: Path) -> sqlite_utils.Database:
    """A connection usable from any thread, WAL mode, 30 s busy timeout."""
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    db = sqlite_utils.Database(conn)
    if db.journal_mode != "wal":
        db.enable_wal()
    conn.execute("PRAGMA synchronous = NORMAL")
    return db


TABLES = ("studies", "live_trials", "events")


class Store:
    """The local database. Thread-safe: one connection guarded by a lock."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False) -> None:
        """Writers open (and create, and migrate) the file now; `read_only` stores open it on their
        first read (see the module docstring)."""
        self.path = Path(path) if path is not None else default_path()
        self.read_only = read_only
        self._lock = threading.Lock()
        self._empty: sqlite_utils.Database | None = None  # what a read-only store reads while no file exists
        self._ro: sqlite_utils.Database | None = None
        if not read_only:
            self.db = self._open_for_writing()

    def _open_for_writing(self) -> sqlite_utils.Database:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Two commands starting at once on a fresh home would both create the tables; the
            # file is created under the same lock, so a reader finding it empty can wait.
            with filelock.FileLock(self._creation_lock(), mode=0o600):
                private_file(self.path)
                db = connect(self.path)
                migrations.apply(db)
            return db
        except Exception as exc:
            if is_damage(exc):  # "file is not a database", "malformed"
                raise DataError(damaged(self.path, exc, LOCAL_STORE)) from None
            if isinstance(exc, (sqlite3.Error, OSError)):  # locked, unwritable folder
                raise UsageError(f"cannot open autotune's database {self.path}: {exc}") from None
            raise

    def _creation_lock(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _using(self) -> Iterator[sqlite_utils.Database]:
        """The connection, under the lock; damage a query (or a JSON column) finds is DataError."""
        with self._lock, reading(self.path, LOCAL_STORE):
            yield self._read_only_db() if self.read_only else self.db

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite_utils.Database]:
        if self.read_only:
            raise RuntimeError(f"Store({self.path}, read_only=True) cannot write: open Store() to change it")
        with self._using() as db:
            yield db

    def _read_only_db(self) -> sqlite_utils.Database:
        if self._ro is not None:
            return self._ro
        if not self.path.exists():
            if self._empty is None:
                self._empty = sqlite_utils.Database(sqlite3.connect(":memory:", check_same_thread=False))
                migrations.apply(self._empty)
            return self._empty
        conn = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30,
                               check_same_thread=False, isolation_level=None)
        try:
            db = sqlite_utils.Database(conn)
            has_tables = lambda: set(TABLES) <= set(db.table_names())  # noqa: E731
            if not has_tables() and not wait_for_creation(self._creation_lock(), has_tables):
                raise DataError(damaged(self.path, "autotune's tables are missing: an empty file, or not "
                                                   "autotune's", LOCAL_STORE))
        except BaseException:
            conn.close()
            raise
        self._ro = db
        return db

    def close(self) -> None:
        # Under the lock: closing a connection while another thread is inside a query on it can
        # crash the interpreter (seen with the TUI closing while a poll worker read).
        with self._lock:
            for db in (getattr(self, "db", None), self._ro, self._empty):
                if db is not None:
                    db.conn.close()

    # studies --------------------------------------------------------------------------------

    def put_study(
        self,
        name: str,
        *,
        storage: str,
        workload: str,
        space: str,
        objective: str,
        n_trials: int,
        spec: dict[str, Any],
        status: str = "queued",
    ) -> None:
        now = time.time()
        existing = self.get_study(name)
        # A password stays on the command line or in AUTOTUNE_STORAGE: never in this file.
        storage = without_password(storage)
        if isinstance(spec.get("storage"), str):
            spec = {**spec, "storage": without_password(spec["storage"])}
        row = {
            "name": name,
            "storage": storage,
            "workload": workload,
            "space": space,
            "objective": objective,
            "n_trials": n_trials,
            "status": status,
            "spec": json.dumps(spec),
            "error": None,
            "updated_at": now,
            "created_at": existing["created_at"] if existing else now,
        }
        with self._writing() as db:
            db["studies"].upsert(row, pk="name")

    def get_study(self, name: str) -> dict[str, Any] | None:
        with self._using() as db:
            rows = list(db.query("select * from studies where name = ?", [name]))
            return _decode_study(rows[0]) if rows else None

    def list_studies(self) -> list[dict[str, Any]]:
        with self._using() as db:
            return [_decode_study(r) for r in db.query("select * from studies order by created_at")]

    def set_study_status(
        self, name: str, status: str, *, error: str | None = None, pid: int | None = None
    ) -> None:
        if status not in STUDY_STATES:
            raise ValueError(f"unknown study status {status!r}")
        now = time.time()
        fields: dict[str, Any] = {"status": status, "updated_at": now}
        if pid is not None:
            fields["pid"] = pid
        if status in ("finished", "failed", "stopped"):
            fields["finished_at"] = now
        if error is not None:
            fields["error"] = error
        sets = ", ".join(f"{k} = ?" for k in fields)
        # started_at is the first start: pausing, resuming or restarting keeps it.
        if status == "running":
            sets += ", started_at = coalesce(started_at, ?)"
            fields["started_at"] = now
        with self._writing() as db:
            db.execute(f"update studies set {sets} where name = ?", [*fields.values(), name])

    def study_status(self, name: str) -> str | None:
        with self._using() as db:
            row = db.execute("select status from studies where name = ?", [name]).fetchone()
        return row[0] if row else None

    def delete_study(self, name: str) -> None:
        with self._writing() as db:
            for table, column in (("studies", "name"), ("live_trials", "study"), ("events", "study")):
                db.execute(f"delete from {table} where {column} = ?", [name])

    # live trials ----------------------------------------------------------------------------

    def trial_started(self, study: str, number: int, pid: int | None, settings: dict[str, Any]) -> None:
        now = time.time()
        with self._writing() as db:
            db["live_trials"].upsert(
                {
                    "study": study, "number": number, "pid": pid, "started_at": now,
                    "updated_at": now, "step": 0, "fraction": 0.0, "settings": json.dumps(settings),
                    "kill_requested": 0,
                },
                pk=("study", "number"),
            )

    def trial_progress(self, study: str, number: int, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._writing() as db:
            db.execute(
                f"update live_trials set {sets} where study = ? and number = ?",
                [*fields.values(), study, number],
            )

    def trial_finished(self, study: str, number: int) -> None:
        with self._writing() as db:
            db.execute("delete from live_trials where study = ? and number = ?", [study, number])

    def live_trials(self, study: str | None = None) -> list[dict[str, Any]]:
        sql, args = "select * from live_trials", []
        if study is not None:
            sql, args = sql + " where study = ?", [study]
        with self._using() as db:
            rows = list(db.query(sql + " order by number", args))
            for row in rows:
                row["settings"] = json.loads(row["settings"] or "{}")
        return rows

    def request_kill(
        self, study: str, number: int | None = None, reason: str = "stopped by the user"
    ) -> int:
        """Ask the runner to stop a running trial (all of the study's when number is None)."""
        sql = "update live_trials set kill_requested = 1, kill_reason = ? where study = ?"
        args: list[Any] = [reason, study]
        if number is not None:
            sql, args = sql + " and number = ?", [*args, number]
        with self._writing() as db:
            return db.execute(sql, args).rowcount

    def kill_requested(self, study: str, number: int) -> str | None:
        """The reason a kill of this trial was requested, or None."""
        with self._using() as db:
            row = db.execute(
                "select kill_requested, kill_reason from live_trials where study = ? and number = ?",
                [study, number],
            ).fetchone()
        if not row or not row[0]:
            return None
        return row[1] or "stopped by the user"

    # events ---------------------------------------------------------------------------------

    def add_event(self, study: str | None, kind: str, message: str, trial: int | None = None) -> None:
        with self._writing() as db:
            db["events"].insert(
                {"ts": time.time(), "study": study, "trial": trial, "kind": kind, "message": message}
            )

    def events(self, study: str | None = None, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        sql, args = "select * from events where id > ?", [after_id]
        if study is not None:
            sql, args = sql + " and study = ?", [after_id, study]
        with self._using() as db:
            return list(db.query(sql + " order by id limit ?", [*args, limit]))

    def events_tail(self, study: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The last `limit` events, oldest first (what a log pane shows on opening)."""
        sql, args = "select * from events", []
        if study is not None:
            sql, args = sql + " where study = ?", [study]
        with self._using() as db:
            rows = list(db.query(sql + " order by id desc limit ?", [*args, limit]))
        return rows[::-1]

    def iter_events(self, study: str | None = None, after_id: int = 0) -> Iterator[dict[str, Any]]:
        while True:
            batch = self.events(study, after_id)
            if not batch:
                return
            yield from batch
            after_id = batch[-1]["id"]


def _decode_study(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["spec"] = json.loads(row["spec"] or "{}")
    return row
