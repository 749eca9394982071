"""Opening a study to read it, and reading its trials incrementally.

Torch-free and Textual-free: `autotune study ...` and the terminal UI read through here.

Finished Optuna trials never change, so each study object keeps a cache of converted `TrialRow`s
keyed by trial number and a poll converts only new and unfinished trials. SQLite storages whose
Optuna schema the direct reader knows (autotune.storage.optuna_sqlite) are read with sqlite3;
other versions and other storages go through the public `Study.get_trials(deepcopy=False)`,
which Optuna's own cache already makes incremental.

`open_study` returns an `optuna.Study`. `open_view` returns a `SqliteStudy` where it can: the same
read-only surface (study_name, directions, user_attrs) without importing SQLAlchemy (~1 s saved
on the terminal UI's start) or Optuna; every reader accepts either.

Reading writes nothing: SQLite files are opened read-only, by the direct reader and by Optuna
alike (rdb.open_for_reading: no tables created, no WAL set). A damaged file, an empty one or
someone else's database is a DataError with the one "damaged" line (autotune.storage.damage).
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autotune.errors import AutotuneError, UsageError
from autotune.storage.damage import reading
from autotune.storage.optuna_sqlite import SqliteStudy, SqliteTrials, study_names
from autotune.storage.rdb import display_url, open_for_reading, sqlalchemy_url, sqlite_path
from autotune.storage.trial_row import TrialRow, row_from_frozen

if TYPE_CHECKING:
    import optuna


class StudyLike(Protocol):
    """What the readers use of a study: an optuna.Study or a SqliteStudy."""

    @property
    def study_name(self) -> str: ...

    @property
    def directions(self) -> list[Any]: ...  # optuna's StudyDirection or optuna_sqlite.Direction

    @property
    def user_attrs(self) -> dict[str, Any]: ...


def open_study(storage_url: str, name: str) -> "optuna.Study":
    """Load study `name` to read it, through Optuna's storage opened read-only. UsageError naming
    study and storage when either is missing; DataError when the file is damaged."""
    import optuna

    storage_url = sqlalchemy_url(storage_url)
    path = sqlite_path(storage_url)
    if path is not None and not path.is_file():
        # Optuna would create an empty database here; a reader must not.
        raise UsageError(f"no study '{name}' in {display_url(storage_url)} (no such file)")
    # SQLite: the direct reader looks first, so both paths call the same file damaged alike
    reader = SqliteTrials.open(path, name) if path is not None else None
    storage = open_for_reading(storage_url)
    try:
        with reading(path):
            study = optuna.load_study(study_name=name, storage=storage)
            study.user_attrs  # noqa: B018  (read now: a damaged file fails here, with its one line)
    except KeyError:
        raise UsageError(f"no study '{name}' in {display_url(storage_url)}") from None
    except AutotuneError:
        raise
    except Exception as exc:  # a file of a newer Optuna, a database that went away ...
        raise UsageError(f"cannot open {display_url(storage_url)}: {type(exc).__name__}: {exc}") from None
    _cache(study).path = path
    _cache(study).reader = reader
    return study


def open_view(storage_url: str, name: str, with_params: bool = True,
              with_log_tails: bool = True) -> "SqliteStudy | optuna.Study":
    """A read-only study: a SqliteStudy for SQLite files whose Optuna schema version we know, else
    `open_study`. Same UsageErrors as open_study. `with_params=False`: rows without parameters
    (counts, best and summaries need none), and Optuna stays unimported. `with_log_tails=False`:
    rows without their log tail (`stored_log_tail` reads one); Optuna's API reads them anyway."""
    path = sqlite_path(storage_url)
    if path is None:
        return open_study(storage_url, name)
    if not path.is_file():
        raise UsageError(f"no study '{name}' in {storage_url} (no such file)")
    reader = SqliteTrials.open(path, name, with_params=with_params, with_log_tails=with_log_tails)
    if reader is None:
        return open_study(storage_url, name)
    view = SqliteStudy(reader, name)
    _cache(view).reader = reader
    return view


def list_studies(storage_url: str) -> list[str]:
    """Names of the studies in a storage, oldest first ([] for a SQLite file that does not exist)."""
    path = sqlite_path(storage_url)
    if path is not None:
        if not path.is_file():
            return []
        names = study_names(path)
        if names is not None:
            return names
    import optuna

    storage = open_for_reading(storage_url)
    try:
        with reading(path):
            return [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except AutotuneError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot read {display_url(storage_url)}: {type(exc).__name__}: {exc}") from None


class _Cache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[int, TrialRow] = {}
        self.order: list[TrialRow] = []
        self.reader: SqliteTrials | None = None
        self.path: Path | None = None  # an Optuna study's SQLite file: named if a later read finds damage
        self.importances: tuple[int, dict[str, float]] | None = None


_caches: "weakref.WeakKeyDictionary[Any, _Cache]" = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache(study: StudyLike) -> _Cache:
    with _caches_lock:
        cache = _caches.get(study)
        if cache is None:
            cache = _caches[study] = _Cache()
        return cache


def direct_reader(study: StudyLike) -> SqliteTrials | None:
    """The direct SQLite reader behind a study opened here, if it has one."""
    return _cache(study).reader


def trial_rows(study: StudyLike, since_number: int | None = None) -> list[TrialRow]:
    """Every trial as a TrialRow, by number; only those numbered >= since_number when given.

    Incremental: rows of finished trials are converted once per Study object and reused.
    Thread-safe; the returned list is new, its rows are shared.
    """
    cache = _cache(study)
    with cache.lock:
        if cache.reader is not None:
            changed = cache.reader.read_changed()
        else:
            with reading(cache.path):
                changed = [
                    row_from_frozen(t)
                    for t in study.get_trials(deepcopy=False)  # type: ignore[attr-defined]
                    if not (t.state.is_finished() and t.number in cache.rows and cache.rows[t.number].finished)
                ]
        if changed:
            new = sorted(r.number for r in changed if r.number not in cache.rows)
            for row in changed:
                cache.rows[row.number] = row
            if cache.order and new and new[0] < cache.order[-1].number:
                cache.order = sorted(cache.rows.values(), key=lambda r: r.number)
            else:
                cache.order = [cache.rows[r.number] for r in cache.order] + [cache.rows[n] for n in new]
        rows = cache.order
    if since_number is None:
        return list(rows)
    return [r for r in rows if r.number >= since_number]


def latest_rows(study: StudyLike, n: int) -> tuple[list[TrialRow], int] | None:
    """The newest `n` rows and the study's trial count, for a first screen of a big study (no
    rows when it has no more than `n`); None when a full `trial_rows` is as cheap (its rows are
    cached already, or there is no direct SQLite reader). Leaves the incremental cache alone."""
    cache = _cache(study)
    with cache.lock:
        if cache.reader is None or cache.order:
            return None
        return cache.reader.read_latest(n)


def stored_log_tail(study: StudyLike, row: TrialRow) -> str | None:
    """A trial's stored log tail, also when its row was read without (open_view's with_log_tails)."""
    reader = _cache(study).reader
    if row.log_tail is not None or reader is None:
        return row.log_tail
    return reader.log_tail(row.number)


def cached_importances(study: StudyLike) -> tuple[int, dict[str, float]] | None:
    return _cache(study).importances


def cache_importances(study: StudyLike, complete: int, values: dict[str, float]) -> None:
    _cache(study).importances = (complete, dict(values))
