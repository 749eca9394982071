"""Reading Optuna's SQLite tables directly, for speed: the contract, and the reader.

Going through `Study.get_trials()` costs SQLAlchemy ~0.7 ms a trial (7 s for a 10,000-trial
study, measured) and ~1 s of imports; this reader takes ~0.05 ms a trial and imports neither
SQLAlchemy nor Optuna (a `Direction` stands in for Optuna's StudyDirection, and parameter
distributions are decoded, through Optuna, only when a reader asks for parameters).

The contract with Optuna, checked by tests/test_storage_optuna_sqlite.py against a real Optuna
study for every schema version listed here:
- `version_info.schema_version` is one of KNOWN_SCHEMA_VERSIONS; any other version (or a file
  that is not an Optuna database) makes `open()` return None and callers use Optuna's API.
- `studies(study_id, study_name)`; `study_directions(study_id, objective, direction)` with
  direction MINIMIZE or MAXIMIZE; `study_user_attributes(study_id, key, value_json)`.
- `trials(trial_id, number, study_id, state, datetime_start, datetime_complete)`: trial_id grows
  with insertion; state is a TrialState name; a trial in COMPLETE, PRUNED or FAIL never changes
  again (so rows of finished trials are read once).
- `trial_values(trial_id, objective, value, value_type)`,
  `trial_intermediate_values(trial_id, step, intermediate_value, intermediate_value_type)` with
  value types FINITE, INF_POS, INF_NEG (NaN intermediates are stored as NAN with a NULL value);
  `trial_params(trial_id, param_name, param_value, distribution_json)` with param_value the
  internal representation; `trial_user_attributes` / `trial_system_attributes(trial_id, key,
  value_json)`.
- Readers open the file read-only and read each poll in one transaction (one snapshot).
- A file without these tables (zero-length, or someone else's database), one SQLite finds damaged,
  and a value that does not decode (JSON, a state name, a date, a distribution) raise DataError
  with the one "damaged" line (autotune.storage.damage); the file is never written to.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from datetime import datetime
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from autotune.errors import DataError
from autotune.storage.damage import damaged, reading, wait_for_creation
from autotune.storage.trial_row import TrialRow, make_row

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

# Optuna RDB schema versions whose tables this reader understands (Optuna 3.2 to 5.x).
KNOWN_SCHEMA_VERSIONS = (12,)
# System attrs the readers need (retries); the others (Optuna's internals) are not read.
SYSTEM_KEYS = ("failed_trial", "retry_history")
# Optuna's TrialState names, as the trials table stores them.
TRIAL_STATES = ("RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING")


class Direction(Enum):
    """Optuna's StudyDirection, without importing Optuna: same names, same values, and equal to
    the StudyDirection of the same name (so a view and an optuna.Study compare alike)."""

    NOT_SET = 0
    MINIMIZE = 1
    MAXIMIZE = 2

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Enum):
            return type(other).__name__ in ("Direction", "StudyDirection") and other.name == self.name
        return NotImplemented

    __hash__ = Enum.__hash__


def connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(
        path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30, check_same_thread=False,
        isolation_level=None,
    )


def schema_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("select schema_version from version_info").fetchone()
    except sqlite3.OperationalError as exc:
        if str(exc).startswith("no such table"):  # not an Optuna file (yet)
            return None
        raise
    return row[0] if row else None


def optuna_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The file's Optuna schema version. DataError when it has no Optuna tables: a zero-length file
    or someone else's database (a writer creating the tables is waited for: rdb.open_storage
    creates the file and its tables under the schema lock)."""
    version = schema_version(conn)
    lock = path.with_name(path.name + ".schema.lock")
    if version is None and wait_for_creation(lock, lambda: schema_version(conn) is not None):
        version = schema_version(conn)
    if version is None:
        raise DataError(damaged(path, "it has no Optuna tables: an empty file or not a study storage"))
    return version


def study_names(path: Path) -> list[str] | None:
    """The studies in an Optuna SQLite file, oldest first; None when this reader cannot read it
    (another schema version: Optuna's API can). DataError when the file is damaged."""
    try:
        conn = connect_read_only(path)
    except sqlite3.Error:
        return None
    try:
        with reading(path):
            if optuna_version(conn, path) not in KNOWN_SCHEMA_VERSIONS:
                return None
            return [name for (name,) in conn.execute("select study_name from studies order by study_id")]
    finally:
        conn.close()


class SqliteStudy:
    """What the readers use of an optuna.Study (name, directions, user attrs), straight from an
    Optuna SQLite file. Read-only; safe to share between threads."""

    def __init__(self, reader: "SqliteTrials", name: str) -> None:
        self._reader = reader
        self.study_name = name
        rows = reader.query("select direction from study_directions where study_id = ? order by objective",
                            [reader.study_id])
        with reader.decoding("its directions"):
            self.directions = [Direction[d] for (d,) in rows]

    @property
    def user_attrs(self) -> dict[str, Any]:
        rows = self._reader.query(
            "select key, value_json from study_user_attributes where study_id = ?", [self._reader.study_id]
        )
        with self._reader.decoding("the study's user attrs"):
            return {k: json.loads(v) for k, v in rows}

    def __repr__(self) -> str:
        return f"SqliteStudy({self.study_name!r})"


class SqliteTrials:
    """Reads one study's trials with sqlite3: only new and unfinished trials after the first read.

    `with_params=False` leaves `params` empty (and Optuna unimported): enough for counts, the best
    trial and summaries, which read settings from the user attrs. `with_log_tails=False` leaves
    `log_tail` None (`log_tail(number)` reads one): a trial keeps up to 4,000 characters of its
    output, which would be most of what a big study's first read parses.
    """

    def __init__(self, conn: sqlite3.Connection, study_id: int, with_params: bool = True,
                 with_log_tails: bool = True, path: Path | None = None) -> None:
        self.conn = conn
        self.path = path  # named in the line a damaged file raises (DataError)
        self.lock = threading.Lock()  # one connection, used from poll, export and importance threads
        self.study_id = study_id
        self.with_params = with_params
        self.skip_attrs = () if with_log_tails else ("log_tail",)
        self.last_finished_id = -1
        self.unfinished: set[int] = set()
        try:  # SQLite >= 3.38 (JSON built in): one JSON object per trial, one json.loads each
            conn.execute("select json_quote('x')")
            self.json_objects = True
        except sqlite3.Error:
            self.json_objects = False

    @classmethod
    def open(cls, path: Path, name: str, with_params: bool = True,
             with_log_tails: bool = True) -> "SqliteTrials | None":
        try:
            conn = connect_read_only(path)
        except sqlite3.Error:
            return None
        try:
            with reading(path):
                version = optuna_version(conn, path)
                row = conn.execute("select study_id from studies where study_name = ?", [name]).fetchone() \
                    if version in KNOWN_SCHEMA_VERSIONS else None
        except BaseException:
            conn.close()
            raise
        if not row:
            conn.close()
            return None
        return cls(conn, row[0], with_params, with_log_tails, path)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """This reader's lock, and damage (also in a value that does not decode) as DataError."""
        with self.lock, reading(self.path):
            yield

    @contextlib.contextmanager
    def decoding(self, what: str) -> Iterator[None]:
        """Values that do not decode are damage: nothing but a damaged page makes them."""
        try:
            yield
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise DataError(damaged(self.path, f"{what}: {type(exc).__name__}: {exc}")) from None

    def query(self, sql: str, args: list[Any]) -> list[tuple[Any, ...]]:
        with self._reading():
            return self.conn.execute(sql, args).fetchall()

    def read_changed(self) -> list[TrialRow]:
        """Rows of trials added or unfinished since the last call, in one consistent snapshot."""
        with self._reading():
            return self._read_changed()

    def log_tail(self, number: int) -> str | None:
        """One trial's stored log tail (its `log_tail` user attr)."""
        found = self.query(
            "select a.value_json from trial_user_attributes a join trials t on a.trial_id = t.trial_id "
            "where t.study_id = ? and t.number = ? and a.key = 'log_tail'", [self.study_id, number],
        )
        with self.decoding(f"trial {number}'s log tail"):
            value = json.loads(found[0][0]) if found else None
        return value if isinstance(value, str) else None

    def _attrs(self, table: str, ids_sql: str, args: list[Any], keys: tuple[str, ...] = (),
               skip: tuple[str, ...] = ()) -> dict[int, dict[str, Any]]:
        """{trial_id: {key: value}}: only `keys` when given; never those in `skip`."""
        conn = self.conn
        only = f" and key in ({','.join('?' * len(keys))})" if keys else ""
        only += f" and key not in ({','.join('?' * len(skip))})" if skip else ""
        args = [*args, *keys, *skip]
        if self.json_objects:
            return {tid: json.loads(obj) for tid, obj in conn.execute(
                f"select trial_id, '{{' || group_concat(json_quote(key) || ':' || value_json, ',') "
                f"|| '}}' from {table} where trial_id in ({ids_sql}){only} group by trial_id",
                args,
            )}
        return {tid: {k: json.loads(v) for _, k, v in group} for tid, group in _group(conn.execute(
            f"select trial_id, key, value_json from {table} where trial_id in ({ids_sql}){only}", args,
        )).items()}

    def read_latest(self, n: int) -> tuple[list[TrialRow], int]:
        """The newest `n` trials' rows, by number, and how many trials the study has; no rows when
        it has no more than `n` (a full read costs as little). Leaves what `read_changed` has read
        alone: a first screen of a big study, before its full read."""
        with self._reading():
            (total,) = self.conn.execute("select count(*) from trials where study_id = ?", [self.study_id]).fetchone()
            if total <= n:
                return [], total
            where = "study_id = ? and trial_id >= coalesce((select trial_id from trials where study_id = ? " \
                    "order by trial_id desc limit 1 offset ?), -1)"
            return [row for _, row in self._read(where, [self.study_id, self.study_id, max(n - 1, 0)])], total

    def _read_changed(self) -> list[TrialRow]:
        unfinished = sorted(self.unfinished)
        where = "study_id = ? and (trial_id > ?" + (
            f" or trial_id in ({','.join('?' * len(unfinished))}))" if unfinished else ")"
        )
        read = self._read(where, [self.study_id, self.last_finished_id, *unfinished])
        for trial_id, row in read:
            if row.finished:
                self.last_finished_id = max(self.last_finished_id, trial_id)
                self.unfinished.discard(trial_id)
            else:
                self.unfinished.add(trial_id)
        return [row for _, row in read]

    def _read(self, where: str, args: list[Any]) -> list[tuple[int, TrialRow]]:
        """(trial_id, row) of the trials `where` selects (SQL on `trials`), by trial_id, in one
        snapshot."""
        ids_sql = f"select trial_id from trials where {where}"
        conn = self.conn
        conn.execute("begin")  # one snapshot: a trial and its values, params and attrs agree
        try:
            trials = conn.execute(
                f"select trial_id, number, state, datetime_start, datetime_complete from trials "
                f"where {where} order by trial_id", args,
            ).fetchall()
            if not trials:
                return []
            values = _group(conn.execute(
                f"select trial_id, objective, value, value_type from trial_values "
                f"where trial_id in ({ids_sql}) order by trial_id, objective", args,
            ))
            params = _group(conn.execute(
                f"select trial_id, param_name, param_value, distribution_json from trial_params "
                f"where trial_id in ({ids_sql}) order by param_id", args,
            )) if self.with_params else {}
            attrs = self._attrs("trial_user_attributes", ids_sql, args, skip=self.skip_attrs)
            system = self._attrs("trial_system_attributes", ids_sql, args, SYSTEM_KEYS)
            inter = _group(conn.execute(
                f"select trial_id, step, intermediate_value, intermediate_value_type "
                f"from trial_intermediate_values where trial_id in ({ids_sql}) order by step", args,
            ))
        finally:
            if conn.in_transaction:
                conn.execute("commit")
        rows = []
        for trial_id, number, state, start, complete in trials:
            with self.decoding(f"trial {number}"):
                if state not in TRIAL_STATES or not isinstance(number, int):
                    raise ValueError(f"state {state!r}, number {number!r}")
                dists: dict[str, BaseDistribution] = {}
                ps: dict[str, Any] = {}
                for _, pname, pvalue, djson in params.get(trial_id, ()):
                    dist = _distribution(djson)
                    dists[pname] = dist
                    ps[pname] = dist.to_external_repr(pvalue)
                vals = [_stored_float(v, t) for _, _, v, t in values.get(trial_id, ())] or None
                rows.append((trial_id, make_row(
                    number, state, vals, ps, dists,
                    attrs.get(trial_id, {}),
                    {s: _stored_float(v, t) for _, s, v, t in inter.get(trial_id, ())},
                    _datetime(start), _datetime(complete), system.get(trial_id, {}),
                )))
        return rows


def _group(cursor: Iterable[tuple[Any, ...]]) -> dict[int, list[tuple[Any, ...]]]:
    grouped: dict[int, list[tuple[Any, ...]]] = {}
    for row in cursor:
        grouped.setdefault(row[0], []).append(row)
    return grouped


@lru_cache(maxsize=1024)
def _distribution(djson: str) -> "BaseDistribution":
    from optuna.distributions import json_to_distribution

    return json_to_distribution(djson)


def _stored_float(value: float | None, kind: str) -> float:
    if kind == "FINITE":
        return float(value)  # type: ignore[arg-type]
    return {"INF_POS": math.inf, "INF_NEG": -math.inf}.get(kind, math.nan)


def _datetime(raw: str | None) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None
