"""`autotune tui [STUDY]`: watch and steer studies in the terminal (Textual, imported lazily)."""

from __future__ import annotations

import click


@click.command()
@click.argument("study", required=False)
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True,
              help="Seconds between polls of the study database.")
def tui(study: str | None, interval: float) -> None:
    """Watch studies live: trials, best so far, importances, running trial, events.

    Opens STUDY directly when given. Keys: p pause/resume, s stop, k kill the running trial,
    e export the best config to $AUTOTUNE_HOME/exports/STUDY-best.toml (the UI says the path),
    tab or [ ] switch studies, enter shows a trial, q quits (studies keep running). Reads
    $AUTOTUNE_HOME/autotune.db.
    """
    open_tui(study, interval=interval, must_exist=True)


def open_tui(study: str | None = None, interval: float = 1.0, must_exist: bool = False) -> None:
    """Run the terminal UI on $AUTOTUNE_HOME's store, opened on `study` when given.

    With must_exist, an unknown study is a UsageError; without, the study screen waits for it
    (a study just handed to the daemon may not be in the store yet).
    """
    from autotune.errors import DataError, UsageError
    from autotune.storage.local import Store

    store = Store(read_only=True)  # the UI writes only when asked to steer
    try:
        if must_exist and study is not None and store.get_study(study) is None:
            known = ", ".join(row["name"] for row in store.list_studies()) or "none yet"
            raise UsageError(f"no study '{study}' in {store.path} (known: {known})")
    except DataError:
        pass  # a damaged store: the UI says so on its first screen
    finally:
        store.close()
    from autotune.tui.app import AutotuneApp

    AutotuneApp(store_path=store.path, study=study, interval=interval).run()


def register(cli: click.Group) -> None:
    cli.add_command(tui)
