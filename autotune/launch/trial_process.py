"""Running one trial in its own process, and talking to it (protocol: autotune.run.child).

Each trial runs in a child process so a crash, a segfault or the kernel's OOM killer takes down
that trial only. Children come from a multiprocessing forkserver that has already imported torch
and the engine, so a trial starts in milliseconds instead of paying `import torch` each time.
What the child runs depends on its request's type (autotune.launch.requests, autotune.launch.trials).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from autotune.home import log_tail
from autotune.launch.requests import TrialRequest
from autotune.launch.trials import run_trial
from autotune.run.child import describe_exit, die_with_parent, redirect_output, relay, serve

_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()


def context() -> Any:
    """The forkserver context, with torch and the engine preloaded in the server."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(
                    ["autotune.launch.trial_process", "autotune.run.engine", "autotune.registry",
                     "autotune.workloads", "autotune.plugins.workloads.catalog",
                     "autotune.plugins.workloads.vision", "torchvision", "sklearn.datasets"]
                )
                with safe_path():
                    multiprocessing.forkserver.ensure_running()
            else:  # Windows: spawn is all there is
                ctx = multiprocessing.get_context("spawn")
            _CONTEXT = ctx
        return _CONTEXT


@dataclass
class TrialOutcome:
    status: str  # engine statuses, plus "crashed", "killed", "error"
    result: dict[str, Any] | None
    error: str | None
    exitcode: int | None
    log_tail: str
    pid: int | None
    launch_seconds: float


@contextlib.contextmanager
def safe_path() -> Any:
    """Start the forkserver without the current folder at the front of its sys.path.

    The forkserver is a fresh `python -c` whose sys.path begins with the current folder; run
    from a folder that holds one named `autotune` (the parent of a checkout), that folder would
    shadow the installed package and every trial would fail to import autotune. PYTHONSAFEPATH
    (Python 3.11+) leaves it out, and stays set in the server, so the trials it forks and the
    interpreters they start in turn (forkserver DataLoader workers, DDP ranks) leave it out too.
    Before 3.11 the server starts from the package's own parent folder instead.
    """
    if sys.version_info >= (3, 11):
        added = "PYTHONSAFEPATH" not in os.environ
        if added:
            os.environ["PYTHONSAFEPATH"] = "1"
        try:
            yield
        finally:
            if added:  # the runner's own environment is left as it was
                os.environ.pop("PYTHONSAFEPATH", None)
        return
    import autotune

    here = os.getcwd()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(autotune.__file__))))
    try:
        yield
    finally:
        os.chdir(here)


def _exit_when_orphaned(parent_pid: int) -> None:
    """A forkserver child's parent is the forkserver, so PR_SET_PDEATHSIG does not fire when the
    runner that launched it dies (a SIGKILLed `autotune worker`): watch the runner itself."""
    from autotune.processes import pid_alive

    while True:
        time.sleep(ORPHAN_POLL_SECONDS)
        if not pid_alive(parent_pid):
            os.killpg(0, signal.SIGKILL)  # this process and its group: DataLoader workers, DDP ranks


ORPHAN_POLL_SECONDS = 0.5


def child_main(request: TrialRequest, conn: Any, parent_pid: int) -> None:
    """Entry point of the trial process."""
    # A group of its own: the processes it starts (DataLoader workers, DDP ranks) can then be
    # killed with it, however it ends (see launch); orphaned, they would run on and hold the
    # runner's pipes open.
    os.setpgid(0, 0)
    die_with_parent()
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="orphan-watch", daemon=True).start()
    redirect_output(request.log_path)
    # A forkserver child inherits "forkserver" as its default start method; the training code in
    # it (DataLoader workers) must start processes as it would in the user's own script.
    multiprocessing.set_start_method(None, force=True)
    os.environ.update(request.env)
    if request.workdir is not None and os.path.isdir(request.workdir):
        os.chdir(request.workdir)
    serve(conn, lambda reporter: _run(request, reporter))


def _run(request: TrialRequest, reporter: Any) -> dict[str, Any]:
    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    return run_trial(request, reporter)


class Watchdog:
    """Notices a trial that stopped making progress (a stopped process, a deadlocked DataLoader
    worker, a hung collective): one that sends nothing for longer than its allowance.

    The allowance is `MULTIPLE` x the trial's own median time per step, measured from its
    progress reports, but never under `floor` seconds; before the first report (process start,
    data loading, torch.compile's first step) it is `FIRST_STEP` x the floor.
    """

    MULTIPLE = 10.0
    FIRST_STEP = 10.0

    def __init__(self, floor: float) -> None:
        self.floor = floor
        self.last = time.monotonic()
        self.step_times: list[float] = []
        self.previous: tuple[int, float] | None = None  # (step, train_time) of the last report

    def heard(self, kind: str, payload: Any) -> None:
        self.last = time.monotonic()
        if kind != "progress":
            return
        step, train_time = payload["step"], payload["train_time"]
        if self.previous is not None and step > self.previous[0]:
            self.step_times.append((train_time - self.previous[1]) / (step - self.previous[0]))
            del self.step_times[:-50]
        self.previous = (step, train_time)

    def allowance(self) -> float:
        if self.previous is None:
            return self.FIRST_STEP * self.floor
        median = statistics.median(self.step_times) if self.step_times else 0.0
        return max(self.floor, self.MULTIPLE * median)

    def stalled(self) -> float | None:
        """Seconds of silence when that is past the allowance, else None."""
        silent = time.monotonic() - self.last
        return silent if silent > self.allowance() else None


def _kill_group(pid: int | None) -> None:
    """Kill what is left of a finished trial's process group (its DataLoader workers when it was
    killed or crashed); nothing is left after a trial that ended well."""
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def launch(
    request: TrialRequest,
    *,
    on_eval: Callable[[dict[str, Any]], bool] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    should_kill: Callable[[], bool | str | None] | None = None,
    on_start: Callable[[int], None] | None = None,
    poll_interval: float = 0.2,
) -> TrialOutcome:
    """Run `request` in a child process and wait for it. Never raises for a failing trial.

    `should_kill` is polled while the trial runs; a truthy answer kills it, and a string answer
    is recorded as the reason.
    """
    ctx = context()
    started = time.perf_counter()
    parent_conn, child_conn = ctx.Pipe()
    process = ctx.Process(target=child_main, args=(request, child_conn, os.getpid()), name="autotune-trial")
    process.start()
    child_conn.close()
    launch_seconds = time.perf_counter() - started
    if on_start is not None and process.pid is not None:
        on_start(process.pid)
    watchdog = Watchdog(request.stall_timeout) if request.stall_timeout else None
    try:
        status, result, error = _wait(process, parent_conn, watchdog, on_eval, on_progress, should_kill, poll_interval)
    except BaseException:
        process.kill()
        process.join(5)
        _kill_group(process.pid)
        raise
    finally:
        parent_conn.close()
    _reap(process)
    if status == "crashed":
        error = describe_exit(process.exitcode)
    return TrialOutcome(
        status=status, result=result, error=error, exitcode=process.exitcode,
        log_tail=log_tail(request.log_path), pid=process.pid, launch_seconds=launch_seconds,
    )


def _wait(
    process: Any, conn: Any, watchdog: Watchdog | None,
    on_eval: Callable[[dict[str, Any]], bool] | None, on_progress: Callable[[dict[str, Any]], None] | None,
    should_kill: Callable[[], bool | str | None] | None, poll_interval: float,
) -> tuple[str, dict[str, Any] | None, str | None]:
    """Relay the child's reports until it sends its result or an error, dies, stalls or is to be
    killed: (status, result, error); "crashed" when it died without a word."""
    while True:
        stopped = _stop(process, watchdog, should_kill)
        if stopped is not None:
            return stopped[0], None, stopped[1]
        if not conn.poll(poll_interval):
            if not process.is_alive() and not conn.poll(0):
                return "crashed", None, None
            continue
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return "crashed", None, None
        if watchdog is not None:
            watchdog.heard(kind, payload)
        if relay(conn, kind, payload, on_eval, on_progress):
            continue
        if kind == "result":
            return payload["status"], payload, payload.get("error")
        if kind == "error":
            return "error", None, payload


def _stop(
    process: Any, watchdog: Watchdog | None, should_kill: Callable[[], bool | str | None] | None
) -> tuple[str, str] | None:
    """Kill the child when asked to or when it stalled: (status, why); None while it may run on."""
    kill_reason = should_kill() if should_kill is not None else None
    if kill_reason:
        process.kill()
        return "killed", kill_reason if isinstance(kill_reason, str) else "stopped by the user"
    silent = watchdog.stalled() if watchdog is not None else None
    if silent is not None:
        process.kill()
        return "stalled", (f"no progress for {silent:.0f} s (allowed {watchdog.allowance():.0f} s): the trial "
                           f"process was stopped or hung, and was killed")
    return None


def _reap(process: Any) -> None:
    """Wait for a child that has answered (or was killed) to exit, then kill what is left of its
    group."""
    process.join(30)
    if process.is_alive():
        process.kill()
        process.join(5)
    _kill_group(process.pid)
