"""Multi-process runs: one training run spread over N processes with torch.distributed.

A knob asks for N processes (`TrainingPlan.processes`, the data_parallel knob's "ddp" mode).
`autotune.run.engine.run` then hands the run to `run_in_processes`, which acts like torchrun's agent:
- it starts N fresh interpreters (the "spawn" start method: CUDA must not be forked), each
  rebuilding the registry, workload and settings from plain data (`RankJob`), so plugin files and
  import-path workloads work as in one process;
- the processes meet through a TCPStore this process owns (port 0: no port to race for) and
  form a process group: NCCL on CUDA (process r on `cuda:r` of the GPUs the trial was given),
  gloo on CPU;
- process 0 measures; its progress and validations come back over a pipe and go to the caller's
  `on_progress` / `on_eval`, whose "prune" answer process 0 shares with the others;
- if any process fails, crashes or runs out of memory, the others would wait forever in their
  next collective, so they are killed at once and the run reports which process failed and why.

Start-up (a fresh interpreter importing torch, the rendezvous) happens before the first step, so
it is in `wall_time` but not in `train_time`: a long training run pays it once.
"""

from __future__ import annotations

import datetime
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.distributed as dist

from autotune.errors import Unsupported
from autotune.run.child import describe_exit, die_with_parent, relay, serve
from autotune.run.collective import backend_for
from autotune.run.plan import Rank
from autotune.run.types import EvalPoint, Progress, RunOptions, RunResult

if TYPE_CHECKING:
    from autotune.budget import Budget
    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.workloads import Workload

# A backstop only: a failed process is noticed through its exit, long before this. It must
# outlast the slowest legitimate wait (torch.compile on one process while the others idle).
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=15)
# After process 0 reports, the others are at most a collective behind it.
STRAGGLER_SECONDS = 60.0
# A process that ends with one of these left the others waiting in a collective that will never
# complete: the group is broken and they are killed. (A diverged run stops on every process alike.)
GROUP_BREAKING = ("failed", "oom", "unsupported")


@dataclass
class RankJob:
    """What one process needs to rebuild the run: plain data only, it crosses a process boundary."""

    workload: str
    data_dir: str | None
    workdir: str | None
    plugin_paths: tuple[str, ...]
    disabled_knobs: tuple[str, ...]
    entry_points: bool
    hardware: "Hardware"
    settings: dict[str, Any]
    budget: dict[str, Any]
    options: RunOptions
    world_size: int
    backend: str
    store_port: int


def rank_main(job: RankJob, rank: int, conn: Any, parent_pid: int) -> None:
    """Entry point of process `rank`: join the group, run the engine, send the result."""
    die_with_parent()
    if os.getppid() != parent_pid:  # the parent died while this interpreter was importing torch
        os._exit(1)
    serve(conn, lambda reporter: _rank_run(job, rank, reporter))


def _rank_run(job: RankJob, rank: int, reporter: Any) -> dict[str, Any]:
    from autotune.budget import Budget
    from autotune.registry import load_registry
    from autotune.run.local import run_here
    from autotune.workloads import load_workload

    device = job.hardware.device_type
    if device == "cuda":
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    registry = load_registry(
        plugin_paths=job.plugin_paths, disabled_knobs=job.disabled_knobs, entry_points=job.entry_points
    )
    workload = load_workload(job.workload, registry, data_dir=job.data_dir, workdir=job.workdir)
    store = dist.TCPStore("127.0.0.1", job.store_port, is_master=False, timeout=COLLECTIVE_TIMEOUT)
    dist.init_process_group(
        job.backend, store=store, rank=rank, world_size=job.world_size, timeout=COLLECTIVE_TIMEOUT
    )
    first = rank == 0  # the one that measures and reports
    result = run_here(
        workload, job.settings, registry, job.hardware, Budget(**job.budget), job.options,
        device=device, on_eval=reporter.on_eval if first else None,
        on_progress=reporter.on_progress if first else None,
        rank=Rank(rank, job.world_size, job.backend),
    )
    # after a failure the others are stuck in a collective and get killed: don't wait on them
    if result.status not in GROUP_BREAKING:
        dist.destroy_process_group()
    if result.traceback:
        print(result.traceback, file=sys.stderr, flush=True)
    return result.to_dict()


def run_in_processes(
    processes: int,
    workload: "Workload",
    settings: dict[str, Any],
    registry: "Registry",
    hardware: "Hardware",
    budget: "Budget",
    options: RunOptions,
    on_eval: Callable[[EvalPoint], bool | None] | None,
    on_progress: Callable[[Progress], None] | None,
) -> RunResult:
    """Run the training in `processes` processes and return process 0's result.

    Peak memory is the largest of any process (each has its own device). Never raises for a
    failing process: the result says which one failed and why.
    """
    if workload.origin is None:
        raise Unsupported(
            f"workload '{workload.name}' was built in code, not loaded by name: the "
            f"{processes} processes of a data-parallel run could not build it again"
        )
    store = dist.TCPStore(
        "127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=COLLECTIVE_TIMEOUT
    )
    job = RankJob(
        workload=workload.origin["spec"], data_dir=workload.origin["data_dir"], workdir=workload.origin.get("workdir"),
        plugin_paths=registry.plugin_paths, disabled_knobs=registry.disabled_knobs,
        entry_points=registry.entry_points, hardware=hardware, settings=dict(settings),
        budget=asdict(budget), options=options, world_size=processes,
        backend=backend_for(hardware.device_type),
        store_port=store.port,
    )
    started = time.perf_counter()
    ranks = _Ranks(processes, on_eval, on_progress)
    try:
        ranks.start(job)
        ranks.watch()
    finally:
        ranks.stop()
        del store
    # stderr: stdout may be a `--json` answer; in a trial process both go to the trial's log
    print(
        f"data-parallel run: {processes} processes ({job.backend}), "
        f"{time.perf_counter() - started:.1f} s from launch to the end", file=sys.stderr, flush=True,
    )
    results = ranks.results
    if ranks.failure is not None:
        rank, status, error = ranks.failure
        return RunResult(
            status=status, settings=dict(settings), device=hardware.device_type,
            error=f"process {rank} of {processes}: {error}",
            peak_memory_bytes=max((r.get("peak_memory_bytes") or 0 for r in results.values()), default=None),
        )
    first = RunResult.from_dict(results[0])
    first.peak_memory_bytes = max(r.get("peak_memory_bytes") or 0 for r in results.values())
    return first


class _Ranks:
    """The processes of one run as this process watches them, like torchrun's agent: their
    pipes, each one's result, and the first failure (rank, status, error), after which the
    others are killed: they would wait forever in their next collective."""

    def __init__(
        self,
        processes: int,
        on_eval: Callable[[EvalPoint], bool | None] | None,
        on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.processes = processes
        self.on_eval, self.on_progress = on_eval, on_progress
        self.procs: list[Any] = []
        self.conns: dict[Any, int] = {}  # a pipe still open -> its process's rank
        self.results: dict[int, dict[str, Any]] = {}
        self.failure: tuple[int, str, str | None] | None = None
        self.first_result_at: float | None = None

    def start(self, job: RankJob) -> None:
        ctx = multiprocessing.get_context("spawn")
        for rank in range(self.processes):
            parent_conn, child_conn = ctx.Pipe()
            proc = ctx.Process(
                target=rank_main, args=(job, rank, child_conn, os.getpid()), name=f"autotune-rank{rank}"
            )
            proc.start()
            child_conn.close()
            self.procs.append(proc)
            self.conns[parent_conn] = rank

    def watch(self) -> None:
        """Relay the processes' reports until each has sent its result or one has failed."""
        while len(self.results) < self.processes and self.failure is None:
            ready = multiprocessing.connection.wait(
                list(self.conns) + [p.sentinel for r, p in enumerate(self.procs) if r not in self.results],
                timeout=1.0,
            )
            for item in ready:
                if item in self.conns:
                    self.receive(item)
            self.notice_exits()
            self.notice_stragglers()

    def receive(self, conn: Any) -> None:
        """One message from a process: a report to relay, its result, or its error."""
        rank = self.conns[conn]
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError):
            del self.conns[conn]
            return
        if relay(conn, kind, payload, self.eval_point, self.progress):
            return
        if kind == "result":
            self.results[rank] = payload
            self.first_result_at = self.first_result_at or time.perf_counter()
            if payload["status"] in GROUP_BREAKING:
                self.failure = (rank, payload["status"], payload.get("error"))
        elif kind == "error":
            self.failure = (rank, "failed", payload)

    def notice_exits(self) -> None:
        """A process that ended without its result failed (once its last message is read)."""
        for rank, proc in enumerate(self.procs):
            if self.failure is None and rank not in self.results and not proc.is_alive():
                conn = next((c for c, r in self.conns.items() if r == rank), None)
                if conn is not None and conn.poll(0):
                    continue  # its last message is still in the pipe: read it first
                self.failure = (rank, "failed", describe_exit(proc.exitcode, who="it"))

    def notice_stragglers(self) -> None:
        late = self.first_result_at is not None and time.perf_counter() - self.first_result_at > STRAGGLER_SECONDS
        if self.failure is None and late:
            missing = next(r for r in range(self.processes) if r not in self.results)
            self.failure = (missing, "failed", f"did not finish within {STRAGGLER_SECONDS:.0f} s of the others")

    def stop(self) -> None:
        """Kill what still runs after a failure (or an interruption), and reap every process."""
        for proc in self.procs:
            if proc.is_alive() and (self.failure is not None or len(self.results) < self.processes):
                proc.kill()
        for proc in self.procs:
            proc.join(30)
        for conn in self.conns:
            conn.close()

    def eval_point(self, payload: dict[str, Any]) -> bool | None:
        return self.on_eval(EvalPoint(**payload)) if self.on_eval is not None else False

    def progress(self, payload: dict[str, Any]) -> None:
        if self.on_progress is not None:
            self.on_progress(Progress(**payload))
