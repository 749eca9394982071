"""Running one trial in its own process, and talking to it.

Each trial runs in a child process so a crash, a segfault or the kernel's OOM killer takes down
that trial only. Children come from a multiprocessing forkserver that has already imported torch
and the engine, so a trial starts in milliseconds instead of paying `import torch` each time.

Protocol over a Pipe, child -> parent: ("progress", dict), ("eval", dict) answered by the parent
with "continue" or "prune", then ("result", dict) or ("error", message).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

_CONTEXT: Any = None
_CONTEXT_LOCK = threading.Lock()
PR_SET_PDEATHSIG = 1


def context() -> Any:
    """The forkserver context, with torch and the engine preloaded in the server."""
    global _CONTEXT
    with _CONTEXT_LOCK:
        if _CONTEXT is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(
                    ["autotune.trial_process", "autotune.engine", "autotune.registry", "autotune.workloads",
                     "torchvision", "sklearn.datasets"]
                )
            else:  # Windows: spawn is all there is
                ctx = multiprocessing.get_context("spawn")
            _CONTEXT = ctx
        return _CONTEXT


@dataclass
class TrialRequest:
    """Everything a child needs to rebuild the run: no live objects cross the process boundary."""

    workload: str
    overrides: dict[str, Any]
    budget: dict[str, Any]
    seed: int = 0
    device: str | None = None
    target: float | None = None
    stop_at_target: bool = False
    evals_per_epoch: int = 1
    plugin_paths: tuple[str, ...] = ()
    disabled_knobs: tuple[str, ...] = ()
    data_dir: str | None = None
    threads: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None


@dataclass
class TrialOutcome:
    status: str  # engine statuses, plus "crashed", "killed", "error"
    result: dict[str, Any] | None
    error: str | None
    exitcode: int | None
    log_tail: str
    pid: int | None
    launch_seconds: float


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL us when our parent dies, so no trial (or one of a trial's
    data-parallel processes) outlives the process that started it."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


def _redirect_output(log_path: str | None) -> None:
    if not log_path:
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def child_main(request: TrialRequest, conn: Any, parent_pid: int) -> None:
    """Entry point of the trial process."""
    die_with_parent()
    # The runner handles Ctrl-C for the whole study; the trial just stops when told.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _redirect_output(request.log_path)
    os.environ.update(request.env)
    try:
        conn.send(("result", _run(request, conn)))
    except BaseException as exc:  # report everything, even SystemExit from a plugin
        import traceback

        traceback.print_exc()
        message = str(exc) or type(exc).__name__
        try:
            conn.send(("error", message))
        except (BrokenPipeError, OSError):
            pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _run(request: TrialRequest, conn: Any) -> dict[str, Any]:
    import torch

    from autotune import engine
    from autotune.config import resolve_settings
    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.workloads import load_workload

    if request.threads:
        torch.set_num_threads(request.threads)
    registry = load_registry(plugin_paths=request.plugin_paths, disabled_knobs=request.disabled_knobs)
    hardware = detect((request.device or "").split(":")[0] or None)
    workload = load_workload(request.workload, registry, data_dir=request.data_dir)
    settings = resolve_settings(registry, hardware, workload, request.overrides)
    print(f"trial pid {os.getpid()}: {request.workload} {settings}", flush=True)

    def on_eval(point: engine.EvalPoint) -> bool:
        conn.send(("eval", asdict(point)))
        return conn.recv() == "prune"

    def on_progress(progress: engine.Progress) -> None:
        conn.send(("progress", asdict(progress)))

    result = engine.run(
        workload, settings, registry, hardware, engine.Budget(**request.budget),
        device=request.device, seed=request.seed, target=request.target,
        stop_at_target=request.stop_at_target, evals_per_epoch=request.evals_per_epoch, on_eval=on_eval, on_progress=on_progress,
    )
    if result.traceback:
        print(result.traceback, flush=True)
    return result.to_dict()


def _tail(path: str | None, lines: int = 40) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def describe_exit(exitcode: int | None, who: str = "trial process") -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        signum = -exitcode
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        hint = {
            "SIGKILL": " (killed: out of memory, or by a user)",
            "SIGSEGV": " (segmentation fault)",
            "SIGABRT": " (aborted)",
            "SIGBUS": " (bus error)",
        }.get(name, "")
        return f"{who} died from {name}{hint}"
    return f"{who} exited with code {exitcode} before reporting a result"


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
    status, result, error = "crashed", None, None
    try:
        while True:
            kill_reason = should_kill() if should_kill is not None else None
            if kill_reason:
                process.kill()
                status = "killed"
                error = kill_reason if isinstance(kill_reason, str) else "stopped by the user"
                break
            if not parent_conn.poll(poll_interval):
                if not process.is_alive() and not parent_conn.poll(0):
                    break
                continue
            try:
                kind, payload = parent_conn.recv()
            except (EOFError, OSError):
                break
            if kind == "progress":
                if on_progress is not None:
                    on_progress(payload)
            elif kind == "eval":
                prune = on_eval(payload) if on_eval is not None else False
                parent_conn.send("prune" if prune else "continue")
            elif kind == "result":
                status, result = payload["status"], payload
                error = payload.get("error")
                break
            elif kind == "error":
                status, error = "error", payload
                break
    except BaseException:
        process.kill()
        process.join(5)
        raise
    finally:
        parent_conn.close()
    process.join(30)
    if process.is_alive():
        process.kill()
        process.join(5)
    if status == "crashed":
        error = describe_exit(process.exitcode)
    return TrialOutcome(
        status=status, result=result, error=error, exitcode=process.exitcode,
        log_tail=_tail(request.log_path), pid=process.pid, launch_seconds=launch_seconds,
    )
