"""`autotune daemon start|stop|status`: the background process that runs queued studies."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import click

from autotune.commands.options import echo_json, json_option


@click.group()
def daemon() -> None:
    """Run studies in the background (`autotune study start --detach` queues them).

    \b
    One daemon per AUTOTUNE_HOME. It has no network listener: it is controlled through
    autotune's database (study pause/resume/stop) and signals. See docs/daemon.md.
    """


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


@daemon.command("start")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trials running at once across all studies. Default: one per group of --gpus-per-trial GPUs, or 1 without GPUs.")
@click.option("--gpus-per-trial", type=click.IntRange(min=1), default=None, metavar="K",
              help="CUDA GPUs each trial gets (default 1); 2+ lets the data_parallel knob search DDP.")
@click.option("--foreground", is_flag=True,
              help="Run in this process and log to stderr too (for systemd and other supervisors).")
@click.option("--detached", is_flag=True, hidden=True)  # set by `daemon start` for the child it spawns
def start(workers: int | None, gpus_per_trial: int | None, foreground: bool, detached: bool) -> None:
    """Start the daemon (detached unless --foreground). SIGTERM drains it; a second SIGTERM stops
    running trials now."""
    from autotune.daemon.files import DaemonError, DaemonPaths, read_state, running_pid
    from autotune.daemon.server import run_foreground
    from autotune.home import ensure_home

    paths = DaemonPaths(ensure_home())
    pid = running_pid(paths)
    if pid is not None:
        raise DaemonError(
            f"the autotune daemon is already running (pid {pid}, home {paths.home}); "
            f"stop it with `autotune daemon stop`"
        )
    if foreground:
        raise SystemExit(run_foreground(workers, detached=detached, debug=_debug(), gpus_per_trial=gpus_per_trial))

    from autotune.daemon.client import start_daemon

    pid = start_daemon(paths, workers, debug=_debug(), gpus_per_trial=gpus_per_trial)
    state = read_state(paths)
    ready = "" if state.get("ready") else ", still starting"
    click.echo(f"autotune daemon started (pid {pid}, home {paths.home}, "
               f"{state.get('workers') or workers or '?'} workers{ready})")
    click.echo("  queue a study:  autotune study start --detach --name NAME ...")
    click.echo("  its log:        autotune logs --follow")


@daemon.command("stop")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Seconds to wait for running trials to finish.")
@click.option("--force", is_flag=True, help="Stop running trials now; they run again when the daemon restarts.")
def stop(timeout: float, force: bool) -> None:
    """Stop the daemon: running trials finish and are recorded, queued studies wait for the next start."""
    from autotune.daemon.files import DaemonError, DaemonPaths, looks_like_daemon, read_state, running_pid

    paths = DaemonPaths.current()
    pid = running_pid(paths)
    if pid is None:
        raise DaemonError(f"no autotune daemon is running (home {paths.home})")
    try:
        os.kill(pid, signal.SIGTERM)
        if force:
            # Two signals sent back to back reach Python's handler as one: wait for the daemon to
            # say it is draining before sending the second, which stops running trials now.
            deadline = time.monotonic() + 10
            while read_state(paths).get("shutdown") is None and looks_like_daemon(pid) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        click.echo(f"autotune daemon stopped (pid {pid})")
        return
    except PermissionError:
        raise DaemonError(f"not allowed to signal the daemon (pid {pid}); it belongs to another user") from None
    click.echo(f"stopping the autotune daemon (pid {pid}): "
               + ("stopping running trials now" if force else "running trials finish first"), err=True)
    deadline = time.monotonic() + timeout
    while looks_like_daemon(pid):
        if time.monotonic() > deadline:
            raise DaemonError(
                f"the daemon (pid {pid}) is still draining after {timeout:g} s; "
                f"`autotune daemon stop --force` stops its running trials now"
            )
        time.sleep(0.1)
    click.echo(f"autotune daemon stopped (pid {pid})")


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"


@daemon.command("status")
@json_option
def status(as_json: bool) -> None:
    """Is the daemon running, with how many workers, on which studies. Exit code 3 when it is not."""
    from autotune.daemon.files import DaemonPaths, read_pidfile, read_state, running_pid

    paths = DaemonPaths.current()
    pid = running_pid(paths)
    state = read_state(paths) if pid is not None else {}
    data: dict[str, Any] = {
        "running": pid is not None,
        "pid": pid,
        "home": str(paths.home),
        "pidfile": str(paths.pidfile),
        "log": str(paths.log),
    }
    stale = read_pidfile(paths)
    if pid is None and stale is not None:
        data["stale_pid"] = stale
    if pid is not None:
        data.update(
            ready=bool(state.get("ready")), shutdown=state.get("shutdown"), workers=state.get("workers"),
            devices=state.get("devices"),
            started_at=state.get("started_at"),
            uptime_s=round(time.time() - state["started_at"], 1) if state.get("started_at") else None,
        )
    data["studies"] = _active_studies(paths)
    if as_json:
        echo_json(data)
    else:
        _print_status(data)
    if pid is None:
        raise SystemExit(3)


def _active_studies(paths: Any) -> list[dict[str, Any]]:
    if not (paths.home / "autotune.db").exists():  # status never creates autotune's files
        return []
    from autotune.statuses import ACTIVE_STUDY_STATES
    from autotune.storage.local import Store

    store = Store(paths.home / "autotune.db", read_only=True)
    try:
        live: dict[str, int] = {}
        for trial in store.live_trials():
            live[trial["study"]] = live.get(trial["study"], 0) + 1
        return [
            {"name": row["name"], "status": row["status"], "n_trials": row["n_trials"],
             "running_trials": live.get(row["name"], 0)}
            for row in store.list_studies() if row["status"] in ACTIVE_STUDY_STATES
        ]
    finally:
        store.close()


def _print_status(data: dict[str, Any]) -> None:
    if data["running"]:
        up = f", up {_uptime(data['uptime_s'])}" if data.get("uptime_s") is not None else ""
        ready = "" if data.get("ready") else ", starting up"
        if data.get("shutdown"):
            ready = f", shutting down ({data['shutdown']})"
        click.echo(f"autotune daemon: running (pid {data['pid']}{up}, {data.get('workers') or '?'} workers{ready})")
    else:
        stale = f"; stale pidfile for pid {data['stale_pid']}" if data.get("stale_pid") else ""
        click.echo(f"autotune daemon: not running{stale}")
    click.echo(f"  home: {data['home']}")
    click.echo(f"  log:  {data['log']}")
    for s in data["studies"]:
        trials = f", {s['running_trials']} trial(s) running" if s["running_trials"] else ""
        click.echo(f"  study {s['name']}: {s['status']}{trials}")
    if not data["running"] and any(s["status"] == "queued" for s in data["studies"]):
        click.echo("  queued studies wait for the daemon: autotune daemon start")


def register(cli: click.Group) -> None:
    cli.add_command(daemon)
