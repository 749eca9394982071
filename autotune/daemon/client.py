"""The CLI's side of the daemon: start it detached, and hand it a study (`study start --detach`).

A submission is validated completely before anything is queued. When a daemon is running it does
the validation (it has torch, the registry and the data already loaded, so the command returns in
well under a second after its own imports); otherwise the command validates the study itself,
queues it and starts a daemon. Either way bad input fails here with exit code 2 and nothing queued.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from autotune.daemon.files import (
    DaemonError,
    DaemonPaths,
    is_ready,
    looks_like_daemon,
    new_submission_id,
    read_pidfile,
    read_state,
    running_pid,
)
from autotune.daemon.inbox import check_queueable
from autotune.home import ensure_home, write_atomic
from autotune.errors import UsageError

logger = logging.getLogger(__name__)

PIDFILE_TIMEOUT = 10.0  # seconds a new daemon gets to write its pidfile
READY_TIMEOUT = 60.0  # seconds it gets to import torch and the rest (slow disks, busy machines)
REPLY_TIMEOUT = 60.0  # seconds a running daemon gets to validate a submission


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    line = lines[-1] if lines else ""
    return line.removeprefix("autotune: error: ")


def start_daemon(
    paths: DaemonPaths, workers: int | None = None, *, debug: bool = False, wait_ready: bool = True,
    gpus_per_trial: int | None = None,
) -> int:
    """Start a detached daemon for `paths.home` and return its pid once it has written its pidfile
    (and, with `wait_ready`, once it is ready for work). Raises DaemonError when it cannot."""
    pid = running_pid(paths)
    if pid is not None:
        raise DaemonError(
            f"the autotune daemon is already running (pid {pid}, home {paths.home}); "
            f"stop it with `autotune daemon stop`"
        )
    cmd = [sys.executable, "-m", "autotune.cli", *(["--debug"] if debug else []),
           "daemon", "start", "--foreground", "--detached"]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    if gpus_per_trial is not None:
        cmd += ["--gpus-per-trial", str(gpus_per_trial)]
    env = {**os.environ, "AUTOTUNE_HOME": str(paths.home)}
    out = os.open(paths.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        # A new session: no controlling terminal, and Ctrl-C in this shell does not reach it.
        # cwd: `-m` puts it first on sys.path, where a folder named autotune would shadow the
        # package (the daemon needs no folder of the user's: a spec's paths are absolute)
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                start_new_session=True, close_fds=True, cwd=paths.home)
    finally:
        os.close(out)
    proc.returncode = 0  # it outlives us on purpose: keep Popen.__del__ from warning about it

    def failed(what: str) -> DaemonError:
        detail = _last_line(paths.out)
        return DaemonError(f"the daemon {what}: {detail or 'no output'} (see {paths.out})")

    deadline = time.monotonic() + PIDFILE_TIMEOUT
    while read_pidfile(paths) != proc.pid or not looks_like_daemon(proc.pid):
        if _exited(proc):
            raise failed("did not start")
        if time.monotonic() > deadline:
            proc.kill()
            raise failed(f"wrote no pidfile within {PIDFILE_TIMEOUT:.0f} s and was killed")
        time.sleep(0.05)
    if wait_ready:
        deadline = time.monotonic() + READY_TIMEOUT
        while not is_ready(paths, proc.pid):
            if _exited(proc):
                raise failed("exited while starting")
            if time.monotonic() > deadline:
                logger.warning("the daemon (pid %d) is still starting after %.0f s", proc.pid, READY_TIMEOUT)
                break
            time.sleep(0.05)
    return proc.pid


def _exited(proc: subprocess.Popen[Any]) -> bool:
    try:
        pid, _ = os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return pid != 0


def _absolute_paths(spec: Any) -> None:
    """The daemon may run elsewhere: make the spec's relative paths absolute (from here)."""
    spec.plugin_paths = tuple(str(Path(p).expanduser().absolute()) for p in spec.plugin_paths)
    if spec.data_dir:
        spec.data_dir = str(Path(spec.data_dir).expanduser().absolute())
    if spec.space and (spec.space.endswith(".toml") or os.sep in spec.space) and Path(spec.space).exists():
        spec.space = str(Path(spec.space).absolute())
    prefix = "sqlite:///"
    if spec.storage and spec.storage.startswith(prefix) and not spec.storage.startswith(prefix + "/") \
            and spec.storage != prefix + ":memory:":
        spec.storage = prefix + str(Path(spec.storage[len(prefix):]).expanduser().absolute())


def _ask_daemon(paths: DaemonPaths, pid: int, spec: Any) -> dict[str, Any] | None:
    """Have the running daemon validate and queue `spec`. None when it cannot answer (then the
    caller validates here); raises the daemon's verdict on bad input."""
    key = new_submission_id()
    request = paths.inbox / f"{key}.json"
    reply = paths.inbox / f"{key}.reply"
    try:
        write_atomic(request, json.dumps({"spec": spec.to_dict(), "client_pid": os.getpid(), "ts": time.time()}))
    except OSError:
        return None
    deadline = time.monotonic() + REPLY_TIMEOUT
    next_check = time.monotonic() + 0.5
    while not reply.exists():
        now = time.monotonic()
        if now > next_check:
            next_check = now + 0.5
            if not looks_like_daemon(pid):
                break
        if now > deadline:
            break
        time.sleep(0.01)
    else:
        answer = json.loads(reply.read_text())
        reply.unlink(missing_ok=True)
        if answer.get("ok"):
            return answer
        if answer.get("exit_code") == 2:
            raise UsageError(answer["error"])
        raise DaemonError(answer["error"])
    try:
        request.unlink()  # still unclaimed: take it back and do the work here
    except FileNotFoundError:
        if looks_like_daemon(pid):
            raise DaemonError(
                f"the daemon (pid {pid}) took the study but did not answer within {REPLY_TIMEOUT:.0f} s; "
                f"see `autotune logs` and `autotune study list`"
            ) from None
    return None


def submit(spec: Any, *, as_json: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Validate `spec`, queue it for the daemon (starting one if needed) and say how to watch it.

    Bad input raises UsageError (exit code 2) and queues nothing. Returns what it printed as JSON:
    {"name": ..., "status": "queued", "daemon_pid": ...}.
    """
    from autotune.storage.local import Store

    began = time.perf_counter()
    paths = DaemonPaths(ensure_home())
    _absolute_paths(spec)
    spec.validate()
    store = Store()
    try:
        check_queueable(store, spec.name)
    finally:
        store.close()
    pid = running_pid(paths)
    answer = _ask_daemon(paths, pid, spec) if pid is not None and is_ready(paths, pid) else None
    started = False
    if answer is None:
        from autotune.daemon.inbox import validate_and_queue

        validate_and_queue(spec)
        pid = running_pid(paths)
        if pid is None:
            pid = start_daemon(paths, wait_ready=False, debug=_debug())
            started = True
        answer = {"name": spec.name, "status": "queued", "daemon_pid": pid}
    result = {"name": answer["name"], "status": answer["status"], "daemon_pid": answer["daemon_pid"]}
    logger.debug("study %s submitted in %.2f s%s", spec.name, time.perf_counter() - began,
                 "" if answer.get("ok") else " (validated here, not by the daemon)")
    if quiet:
        return result
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return result
    if started:
        click.echo(f"started the autotune daemon (pid {pid}, home {paths.home})")
    workers = read_state(paths).get("workers")
    where = f"daemon pid {result['daemon_pid']}" + (f", {workers} workers" if workers else "")
    click.echo(f"queued study '{spec.name}' ({where})")
    click.echo(f"  watch it:    autotune tui {spec.name}")
    click.echo(f"  results:     autotune study show {spec.name}")
    click.echo("  daemon log:  autotune logs --follow")
    return result


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))
