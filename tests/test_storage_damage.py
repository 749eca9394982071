"""A damaged database is one line, everywhere (issue 28).

A real study's two databases (Optuna's studies.db, autotune's autotune.db), damaged page by page:
every page overwritten with random bytes, zeroed, its b-tree header or its second half randomized,
the file truncated at each page boundary, emptied, replaced by someone else's database, and values
that do not decode (JSON, UTF-8, a state name) written into their columns. For each variant
`study list`, `study show`, `study show --json`, `study best` and `study export` (in-process, through
click's runner) either give exactly the undamaged answer (the damage lies where the command does
not read: an index it does not use, a table it does not touch) or exit 1 with one line on stderr
that names the file and says it is damaged, never a traceback and never a different answer. The
damaged file is byte for byte what it was afterwards (readers open it read-only), and so is the
other. Optuna's own storage (reading.open_study) is held to the same rule, and the terminal UI's
first screen shows the line instead of crashing.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from autotune.cli import cli
from autotune.storage.local import Store

ROOT = Path(__file__).resolve().parents[1]
NAME = "ok"
COMMANDS = (
    ("study", "list"),
    ("study", "show", NAME),
    ("study", "show", NAME, "--json"),
    ("study", "best", NAME),
    ("study", "export", NAME),
)
FILES = ("studies.db", "autotune.db")
SIZE = (140, 40)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with a finished real study: `study start` in its own process, 3 trials of digits of
    4 steps each, no confirmation (about 15 s). Every page is in the main files afterwards: the last
    connection to close folds the write-ahead log in."""
    home = tmp_path_factory.mktemp("damage") / "home"
    env = {**os.environ, "AUTOTUNE_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "study", "start", "--name", NAME, "--n-trials", "3",
         "--space", "quick", "--budget-steps", "4", "--confirm", "0", "--seed", "0", "--no-tui"],
        cwd=home.parent, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in FILES:
        wal = home / (name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, f"{wal}: pages not folded into {name}"
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the template whose store row points at the copy's own studies.db."""
    home = tmp_path / "home"
    shutil.copytree(template, home)
    with sqlite3.connect(home / "autotune.db") as conn:
        conn.execute("update studies set storage = ?", [f"sqlite:///{home / 'studies.db'}"])
    conn.close()
    for leftover in home.glob("*.db-*"):  # the -wal and -shm that writing left: nothing in them
        leftover.unlink()
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    return home


def page_size(data: bytes) -> int:
    size = int.from_bytes(data[16:18], "big")
    return 65536 if size == 1 else size


def foreign_database(folder: Path) -> bytes:
    """Someone else's SQLite database: valid, with none of the tables autotune reads."""
    path = folder / "foreign.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("create table notes (id integer primary key, body text)")
        conn.executemany("insert into notes (body) values (?)", [("x" * 100,)] * 50)
    conn.close()
    return path.read_bytes()


def page_variants(data: bytes, rng: random.Random, foreign: bytes) -> Iterator[tuple[str, bytes]]:
    """(what, damaged bytes): every page randomized, zeroed, its first 100 bytes (the b-tree page
    header and cell pointers; page 0's file header) randomized, its second half (cell contents)
    randomized; the file truncated at every page boundary, emptied, replaced by another database."""
    size = page_size(data)
    for page in range(len(data) // size):
        lo, hi = page * size, (page + 1) * size
        yield f"page {page} random", data[:lo] + rng.randbytes(size) + data[hi:]
        yield f"page {page} zeroed", data[:lo] + bytes(size) + data[hi:]
        yield f"page {page} header random", data[:lo] + rng.randbytes(100) + data[lo + 100:]
        yield f"page {page} second half random", data[:lo + size // 2] + rng.randbytes(size // 2) + data[hi:]
        if page:
            yield f"truncated after page {page - 1}", data[:lo]
    yield "zero-length", b""
    yield "another program's database", foreign


# Values that do not decode, written through SQLite itself: the pages are sound, the contents not.
COLUMN_DAMAGE = {
    "studies.db": [
        ("a trial's settings are not JSON",
         "update trial_user_attributes set value_json = '{\"batch_size\": 3' where key = 'settings'"),
        ("a study attribute is not UTF-8",
         "update study_user_attributes set value_json = cast(x'22ff22' as text) where key = 'autotune'"),
        ("a trial's state is no state", "update trials set state = 'SIDEWAYS' where number = 1"),
    ],
    "autotune.db": [
        ("the study's spec is not JSON", "update studies set spec = '{\"workload\": '"),
    ],
}


def column_variants(name: str, data: bytes, scratch: Path) -> Iterator[tuple[str, bytes]]:
    for what, sql in COLUMN_DAMAGE[name]:
        path = scratch / f"column-{name}"
        path.write_bytes(data)
        with sqlite3.connect(path) as conn:
            conn.execute(sql)
        conn.close()
        yield what, path.read_bytes()


def run(command: tuple[str, ...]) -> tuple[int, str, str, BaseException | None]:
    result = CliRunner().invoke(cli, list(command))
    return result.exit_code, result.stdout, result.stderr, result.exception


def check(command: tuple[str, ...], got: tuple[int, str, str, BaseException | None],
          good: tuple[int, str, str, BaseException | None], path: Path, what: str) -> str:
    """'same' or 'damaged'; anything else fails the test, saying which variant and command."""
    code, out, err, exc = got
    where = f"{path.name}, {what}: autotune {' '.join(command)}"
    assert exc is None or isinstance(exc, SystemExit), f"{where}: raised {exc!r}"
    assert "Traceback" not in out + err, f"{where}: {err[-2000:]}"
    if code == 0:
        assert (out, err) == (good[1], good[2]), f"{where}: exit 0 with another answer:\n{out[:1500]}{err}"
        return "same"
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1, f"{where}: exit {code}, stderr {err[-2000:]!r}"
    assert lines[0].startswith("autotune: error: ") and f"{path} is damaged" in lines[0], f"{where}: {lines[0]}"
    assert out == "", f"{where}: printed {out[:500]!r} before failing"
    return "damaged"


def stamps(home: Path) -> dict[str, tuple[bytes, int]]:
    """Each file's bytes and modification time."""
    return {name: ((home / name).read_bytes(), (home / name).stat().st_mtime_ns) for name in FILES}


def unchanged(home: Path, before: dict[str, tuple[bytes, int]], where: str) -> None:
    """Both files as they were, bytes and modification time (the damaged one too), and no log of
    writes beside them."""
    assert stamps(home) == before, f"{where}: written to"
    for name in FILES:
        wal = home / (name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, f"{where}: {name}-wal has writes"


def test_damage_anywhere_is_one_line_or_the_right_answer(home: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    good = {command: run(command) for command in COMMANDS}
    for command, result in good.items():
        assert result[0] == 0 and result[2] == "", (command, result)
    originals = {name: (home / name).read_bytes() for name in FILES}
    foreign = foreign_database(tmp_path)
    rng = random.Random(28)
    outcomes: dict[str, dict[str, int]] = {c[1] + (" --json" if "--json" in c else ""): {} for c in COMMANDS}
    variants = 0
    for name in FILES:
        path = home / name
        damaged = [*page_variants(originals[name], rng, foreign), *column_variants(name, originals[name], tmp_path)]
        for what, data in damaged:
            path.write_bytes(data)
            before = stamps(home)
            for command in COMMANDS:
                verdict = check(command, run(command), good[command], path, what)
                key = command[1] + (" --json" if "--json" in command else "")
                outcomes[key][verdict] = outcomes[key].get(verdict, 0) + 1
            unchanged(home, before, f"{name}, {what}")
            variants += 1
        path.write_bytes(originals[name])
    took = time.perf_counter() - started
    print(f"\n{variants} variants x {len(COMMANDS)} commands in {took:.1f} s: {outcomes}")
    assert variants >= 200
    for key, counts in outcomes.items():  # every command met damage it had to report
        assert counts.get("damaged", 0) >= 50, (key, counts)


def test_through_optunas_storage_too(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path a studies.db of another Optuna schema version takes: the direct reader declines it
    and every read goes through Optuna's RDB storage, opened read-only (rdb.open_for_reading). The
    same rule holds; a third of the page variants, each command on a share of them."""
    from autotune.storage import optuna_sqlite

    monkeypatch.setattr(optuna_sqlite, "KNOWN_SCHEMA_VERSIONS", ())
    good = {command: run(command) for command in COMMANDS}
    for command, result in good.items():
        assert result[0] == 0 and result[2] == "", (command, result)
    path = home / "studies.db"
    originals = {name: (home / name).read_bytes() for name in FILES}
    seen = {"same": 0, "damaged": 0}
    variants = list(page_variants(originals["studies.db"], random.Random(5), foreign_database(tmp_path)))[::3]
    for i, (what, data) in enumerate(variants):
        path.write_bytes(data)
        before = stamps(home)
        for command in (COMMANDS[i % len(COMMANDS)], COMMANDS[(i + 2) % len(COMMANDS)]):
            seen[check(command, run(command), good[command], path, what)] += 1
        unchanged(home, before, what)
    print(f"\nthrough Optuna's storage: {len(variants)} variants, 2 commands each: {seen}")
    assert seen["damaged"] >= 40, seen


def test_readers_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a home with no databases yet, reading lists nothing and creates no file."""
    home = tmp_path / "fresh"
    home.mkdir()
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    code, out, err, _ = run(("study", "list"))
    assert code == 0 and "no studies yet" in out, err
    assert Store(read_only=True).list_studies() == []
    assert sorted(p.name for p in home.iterdir()) == []


def tui_samples(originals: dict[str, bytes], foreign: bytes) -> Iterator[tuple[str, str, bytes]]:
    rng = random.Random(7)
    for name in FILES:
        for i, (what, data) in enumerate(page_variants(originals[name], rng, foreign)):
            if i % 9 == 0 or what in ("zero-length", "another program's database"):
                yield name, what, data


async def first_screen(app: Any, pilot: Any) -> None:
    for _ in range(500):
        await pilot.pause(0.02)
        if app.polls >= 1:
            break
    else:
        raise AssertionError("no poll reached the first screen")
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_the_tui_shows_the_line_on_its_first_screen(home: Path, tmp_path: Path) -> None:
    from autotune.tui.app import AutotuneApp

    def seen(app: Any) -> tuple[str, list[str]]:
        """What the studies list shows: the line above the table, and the study's row."""
        screen = app.screen
        above = screen.query_one("#studies-empty")
        table = screen.query_one("#studies")
        row = [str(c) for c in table.get_row(NAME)] if table.row_count else []
        return (str(above.content) if above.display else ""), row

    async def show() -> tuple[str, list[str]]:
        app = AutotuneApp(interval=30)
        async with app.run_test(size=SIZE) as pilot:
            await first_screen(app, pilot)
            return seen(app)

    good = await show()
    assert good[0] == "" and good[1][:4] == [NAME, "finished", "time-to-accuracy", "3/3"], good
    originals = {name: (home / name).read_bytes() for name in FILES}
    counts = {"same": 0, "damaged": 0}
    for name, what, data in tui_samples(originals, foreign_database(tmp_path)):
        path = home / name
        path.write_bytes(data)
        before = stamps(home)
        above, row = await show()
        line = f"{path} is damaged"
        if above or any(line in cell for cell in row):
            shown = above if line in above else next(cell for cell in row if line in cell)
            assert line in shown and "\n" not in shown and "Traceback" not in shown, (name, what, shown)
            counts["damaged"] += 1
        else:
            assert (above, row) == good, (name, what, above, row)
            counts["same"] += 1
        unchanged(home, before, f"{name}, {what}")
        path.write_bytes(originals[name])
    print(f"\nthe terminal UI's first screen: {sum(counts.values())} variants: {counts}")
    assert counts["damaged"] >= 8, counts
