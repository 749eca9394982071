"""`autotune logs`: the daemon's log, a study's events, or one trial's output."""

from __future__ import annotations

import os
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import click

from autotune.errors import UsageError
from autotune.home import trial_logs

POLL_SECONDS = 0.5


@click.command("logs")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines as they come (Ctrl-C to stop).")
@click.option("-n", "lines", type=click.IntRange(min=0), default=50, show_default=True,
              help="How many of the last lines to print first.")
@click.option("--study", default=None, metavar="NAME", help="A study's events instead of the daemon's log.")
@click.option("--trial", type=int, default=None, metavar="N",
              help="With --study: the output (stdout and stderr) of trial N.")
def logs(follow: bool, lines: int, study: str | None, trial: int | None) -> None:
    """Print the daemon's log ($AUTOTUNE_HOME/logs/daemon.log), a study's events, or a trial's output.

    \b
      autotune logs --follow              the daemon, as it runs
      autotune logs --study demo          what happened in study demo
      autotune logs --study demo --trial 3  trial 3's stdout and stderr
    """
    from autotune.home import autotune_home

    home = autotune_home()
    if trial is not None and study is None:
        raise UsageError("--trial needs --study NAME")
    try:
        if study is None:
            _print_file(home / "logs" / "daemon.log", lines, follow,
                        missing="no daemon log yet; start the daemon with `autotune daemon start`")
        elif trial is None:
            _print_events(home, study, lines, follow)
        else:
            _print_trial(home, study, trial, lines, follow)
    except KeyboardInterrupt:
        pass


def _tail(path: Path, lines: int) -> tuple[list[str], int]:
    """The last `lines` lines of `path` and the offset after them."""
    with open(path, "rb") as f:
        kept: deque[bytes] = deque(f, maxlen=lines) if lines else deque()
        end = f.seek(0, os.SEEK_END)
    return [line.decode("utf-8", "replace").rstrip("\n") for line in kept], end


def _print_file(path: Path, lines: int, follow: bool, missing: str) -> None:
    if not path.exists():
        if not follow:
            raise UsageError(f"{path}: {missing}")
        click.echo(f"waiting for {path} ...", err=True)
        while not path.exists():
            time.sleep(POLL_SECONDS)
    try:
        shown, offset = _tail(path, lines)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    for line in shown:
        click.echo(line)
    if follow:
        for line in _follow(path, offset):
            click.echo(line)


def _follow(path: Path, offset: int) -> Iterator[str]:
    """New lines appended to `path`; starts over when the file is rotated or truncated."""
    inode = path.stat().st_ino
    pending = b""
    while True:
        try:
            st = path.stat()
        except FileNotFoundError:  # between the rotation's rename and the new file
            time.sleep(POLL_SECONDS)
            continue
        if st.st_ino != inode or st.st_size < offset:
            inode, offset, pending = st.st_ino, 0, b""
        if st.st_size > offset:
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            offset += len(data)
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")
        else:
            time.sleep(POLL_SECONDS)


def _open_store(home: Path) -> Any:
    if not (home / "autotune.db").exists():
        raise UsageError(f"no studies yet in {home}")
    from autotune.storage.local import Store

    return Store(home / "autotune.db", read_only=True)


def _print_events(home: Path, study: str, lines: int, follow: bool) -> None:
    store = _open_store(home)
    try:
        if store.get_study(study) is None and not store.events(study, limit=1):
            raise UsageError(f"no study '{study}' (see autotune study list)")
        events = list(store.iter_events(study))
        for event in events[-lines:] if lines else []:
            click.echo(_fmt_event(event))
        after = events[-1]["id"] if events else 0
        while follow:
            batch = store.events(study, after)
            for event in batch:
                click.echo(_fmt_event(event))
                after = event["id"]
            if not batch:
                time.sleep(POLL_SECONDS)
    finally:
        store.close()


def _fmt_event(event: dict[str, Any]) -> str:
    ts = datetime.fromtimestamp(event["ts"]).strftime("%Y-%m-%d %H:%M:%S")
    return f"{ts} {event['kind']:<16} {event['message']}"


def _print_trial(home: Path, study: str, trial: int, lines: int, follow: bool) -> None:
    path = trial_logs(study) / f"{trial}.log"
    if path.exists():
        _print_file(path, lines, follow, missing="")
        return
    # The file is gone (or the study ran elsewhere): the tail kept with the trial in Optuna's storage.
    tail = _stored_tail(home, study, trial)
    text = tail.splitlines()
    for line in text[-lines:] if lines else []:
        click.echo(line)


def _stored_tail(home: Path, study: str, trial: int) -> str:
    store = _open_store(home)
    try:
        row = store.get_study(study)
    finally:
        store.close()
    from autotune.storage.rdb import default_storage_url
    from autotune.storage.reading import open_view, stored_log_tail, trial_rows

    url = row["storage"] if row else default_storage_url()
    st = open_view(url, study, with_log_tails=False)  # read-only: a damaged file is its one line
    for t in trial_rows(st):
        if t.number == trial:
            tail = stored_log_tail(st, t)
            if tail is None:
                raise UsageError(f"study '{study}': trial {trial} has no output recorded yet")
            return str(tail)
    raise UsageError(f"study '{study}' has no trial {trial}")


def register(cli: click.Group) -> None:
    cli.add_command(logs)
