"""The background daemon: runs queued studies, several at once, and survives their failures.

One daemon per AUTOTUNE_HOME; its files (all private to the user) are autotune.daemon.files.

There is no network listener. Control goes through autotune's database (a study's status, a trial's
kill flag: `autotune study pause/resume/stop`), the inbox directory, and signals: the first
SIGTERM/SIGINT drains (no new trial starts, running trials finish and are recorded, the drained
studies go back to the queue), a second one stops running trials now (they run again next time).

Importing this module is cheap (no torch, no Optuna). The daemon process imports the heavy parts
once it holds its lock.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autotune.daemon.files import DaemonPaths, PidLock
from autotune.daemon.inbox import Inbox, clean_inbox
from autotune.daemon.startup import setup_logging, warm_forkserver, warm_up
from autotune.errors import AutotuneError, UsageError
from autotune.home import ensure_home, write_atomic
from autotune.processes import pid_alive
from autotune.statuses import ACTIVE_STUDY_STATES, RunStatus, StudyStatus
from autotune.storage.local import Store

if TYPE_CHECKING:
    from autotune.devices import DevicePool

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often the store is read for queued studies
TICK_SECONDS = 0.1  # how often signals and the inbox are looked at
FORCE_GRACE_SECONDS = 15.0  # after a second signal, how long stopped trials get to be recorded


@dataclass
class Job:
    """One study the daemon is running, on its own thread."""

    name: str
    workers: int
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    drain_to: str | None = None  # the status to restore after a drain: queued or paused
    killed: list[int] = field(default_factory=list)  # trials stopped by a forced shutdown


class Daemon:
    """The main loop: adopt orphaned studies, start queued ones within --workers, drain on signals."""

    def __init__(self, paths: DaemonPaths, workers: int, pool: DevicePool,
                 state: dict[str, Any] | None = None) -> None:
        self.paths = paths
        self.state = state if state is not None else {}
        self.workers = workers
        self.pool = pool
        self.jobs: dict[str, Job] = {}
        self.signals: list[int] = []
        self.draining = False
        self.forced_at: float | None = None
        self._wake = threading.Event()
        self.inbox = Inbox(paths, lambda: self.draining, self._wake)
        self._suspects: dict[str, tuple[str, int | None]] = {}
        self._polls = 0

    # signals: the handler only records; the main loop acts

    def on_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)
        self._wake.set()

    def publish(self, **changes: Any) -> None:
        """Update daemon.json, which `daemon status` and `daemon stop` read."""
        self.state.update(changes)
        try:
            write_atomic(self.paths.statefile, json.dumps(self.state))
        except OSError as exc:
            logger.warning("cannot update %s: %s", self.paths.statefile, exc)

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)

    # main loop

    def serve(self) -> int:
        store = Store()
        try:
            last_poll = 0.0
            handled = 0
            while True:
                while handled < len(self.signals):
                    handled += 1
                    try:
                        self._on_shutdown_signal(store, self.signals[handled - 1], handled)
                    except Exception:
                        logger.exception("shutdown: could not mark every study; going on")
                self._reap()
                if self.draining:
                    if not self.jobs:
                        logger.info("shutdown: every study is drained")
                        return 0
                    if self.forced_at is not None and time.monotonic() - self.forced_at > FORCE_GRACE_SECONDS:
                        self._give_up(store)
                        return 1
                now = time.monotonic()
                try:
                    self.inbox.check()
                    if now - last_poll >= POLL_SECONDS and not self.draining:
                        last_poll = now
                        self._adopt_orphans(store)
                        self._start_queued(store)
                except Exception:  # a locked or broken database now and then must not end the daemon
                    logger.exception("main loop: poll failed; trying again")
                    last_poll = now
                self._wake.wait(TICK_SECONDS)
                self._wake.clear()
        finally:
            store.close()

    def _on_shutdown_signal(self, store: "Store", signum: int, count: int) -> None:
        name = signal.Signals(signum).name
        if count == 1 and not self.jobs:
            logger.info("shutdown: %s received; no study is running", name)
            self.draining = True
            self.publish(shutdown="draining", shutdown_since=time.time())
        elif count == 1:
            running = sum(len(store.live_trials(j.name)) for j in self.jobs.values())
            logger.info(
                "shutdown: %s received; draining %d studies (%d running trials finish, no new trial "
                "starts); send it again to stop the running trials now", name, len(self.jobs), running,
            )
            self.draining = True
            self.publish(shutdown="draining", shutdown_since=time.time())
            for job in self.jobs.values():
                status = store.study_status(job.name)
                # a study already stopping (asked to) stops; the others wait for the next start
                if status in ACTIVE_STUDY_STATES and status != StudyStatus.STOPPING:
                    job.drain_to = "paused" if status == "paused" else "queued"
                    store.set_study_status(job.name, "stopping")
                    store.add_event(job.name, "study_draining",
                                    "the daemon is shutting down: the running trial finishes, then the study waits")
                job.stop_event.set()
        elif count == 2:
            self.forced_at = time.monotonic()
            self.publish(shutdown="forced")
            total = 0
            for job in self.jobs.values():
                job.killed = [t["number"] for t in store.live_trials(job.name)]
                total += store.request_kill(
                    job.name, reason="stopped by a forced daemon shutdown; it runs again on the next start"
                )
                if job.drain_to is None and store.study_status(job.name) != "stopping":
                    job.drain_to = "queued"
            logger.warning("shutdown: second %s; stopping %d running trials now (they run again on the next start)",
                           name, total)
        else:
            logger.warning("shutdown: %s again; still waiting for %d studies to record their stopped trials",
                           name, len(self.jobs))

    def _give_up(self, store: "Store") -> None:
        logger.error("shutdown: %d studies did not stop within %.0f s; exiting now (their trial processes "
                     "die with the daemon and rerun on the next start)", len(self.jobs), FORCE_GRACE_SECONDS)
        for job in self.jobs.values():
            try:
                store.set_study_status(job.name, job.drain_to or "queued")
            except Exception:  # the next start adopts it anyway: its runner pid will be dead
                logger.exception("study %s: could not put it back on the queue", job.name)

    def _adopt_orphans(self, store: "Store") -> None:
        """Studies marked running (or stopping) whose runner process is gone go back to the queue.

        A study must look orphaned on two polls in a row: a foreground `study start` marks its
        study running a moment before it records its own pid.
        """
        self._polls += 1
        suspects: dict[str, tuple[str, int | None]] = {}
        for row in store.list_studies():
            name, status, pid = row["name"], row["status"], row.get("pid")
            if name in self.jobs or status not in ("running", "stopping"):
                continue
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                continue
            if self._suspects.get(name) != (status, pid):
                suspects[name] = (status, pid)
                continue
            # Left "stopping" by a daemon that died while draining: resume it. Stopped by the user
            # while this daemon runs: leave it stopped.
            new = "queued" if status == "running" or self._polls <= 2 else "stopped"
            store.set_study_status(name, new)
            message = (f"its runner (pid {pid}) is gone; the daemon resumes it" if new == "queued"
                       else f"its runner (pid {pid}) is gone while it was stopping; it stays stopped")
            store.add_event(name, "study_requeued" if new == "queued" else "study_stopped", message)
            logger.info("study %s: %s", name, message)
        self._suspects = suspects

    def _start_queued(self, store: "Store") -> None:
        used = sum(job.workers for job in self.jobs.values())
        for row in store.list_studies():  # oldest first: a study that does not fit yet blocks later ones
            if row["status"] != "queued" or row["name"] in self.jobs:
                continue
            wanted = int((row.get("spec") or {}).get("workers") or 1)
            workers = max(1, min(wanted, self.workers))
            if used + workers > self.workers:
                return
            used += workers
            job = Job(name=row["name"], workers=workers)
            if workers < wanted:
                logger.info("study %s asks for %d workers; the daemon runs at most %d trials at once",
                            job.name, wanted, self.workers)
            store.set_study_status(job.name, "running", pid=os.getpid())
            job.thread = threading.Thread(target=self._run_job, args=(job, row), name=f"study-{job.name}",
                                          daemon=True)
            self.jobs[job.name] = job
            logger.info("study %s: starting (%d workers, %d of %d in use)", job.name, workers, used, self.workers)
            job.thread.start()

    def _reap(self) -> None:
        for name, job in list(self.jobs.items()):
            if job.thread is not None and not job.thread.is_alive():
                del self.jobs[name]
                logger.info("study %s: done here (%d studies still running)", name, len(self.jobs))

    def _run_job(self, job: Job, row: dict[str, Any]) -> None:
        """Thread body: prepare, open (recovering stale trials) and run one study."""
        from autotune.spec import StudySpec
        from autotune.study.events import LogReporter
        from autotune.study.prepare import prepare
        from autotune.study.runner import StudyRunner

        name = job.name
        store = Store()
        runner = None
        try:
            spec = StudySpec.from_dict(row["spec"])
            spec.workers = job.workers
            prepared = prepare(spec)
            runner = StudyRunner(prepared, store, listeners=[LogReporter(logger)], stop_event=job.stop_event,
                                 devices=self.pool)
            if job.stop_event.is_set():
                return
            runner.open()  # marks the study running: a drain that began meanwhile must win
            if job.stop_event.is_set():
                store.set_study_status(name, "stopping")
            runner.run()
        except BaseException as exc:  # a raising plugin or a broken spec fails the study, never the daemon
            message = str(exc).strip() or type(exc).__name__
            expected = isinstance(exc, AutotuneError)
            logger.error("study %s failed: %s", name, message, exc_info=not expected)
            try:
                store.set_study_status(name, "failed", error=message)
                store.add_event(name, "study_failed", f"study failed in the daemon: {message}")
            except Exception:
                logger.exception("study %s: could not record the failure", name)
            job.drain_to = None
        finally:
            try:
                self._after_job(store, job, runner)
            except Exception:
                logger.exception("study %s: could not put it back on the queue", name)
            store.close()

    def _after_job(self, store: "Store", job: Job, runner: Any) -> None:
        """A study the daemon drained goes back to the queue (or stays paused) to resume next start."""
        if job.drain_to is None:
            return
        status = store.study_status(job.name)
        if status not in ("stopped", "stopping", "running"):
            return  # finished or failed meanwhile
        study = getattr(runner, "study", None)
        if study is not None and job.killed:
            from autotune.study.retries import requeue_ended

            for number in requeue_ended(study, RunStatus.KILLED, job.killed):
                store.add_event(job.name, "trial_requeued",
                                f"trial {number} was stopped by the daemon's shutdown; it runs again", number)
        store.set_study_status(job.name, job.drain_to)
        store.add_event(job.name, "study_requeued" if job.drain_to == "queued" else "study_paused",
                        f"the daemon shut down; the study is {job.drain_to} and resumes when the daemon starts")
        logger.info("study %s: drained, now %s", job.name, job.drain_to)

# process setup -------------------------------------------------------------------------------


def run_foreground(
    workers: int | None = None, detached: bool = False, debug: bool = False, gpus_per_trial: int | None = None
) -> int:
    """Run the daemon in this process until it is told to stop. Returns the exit status."""
    paths = DaemonPaths(ensure_home())
    os.umask(0o077)
    lock = PidLock(paths)
    stale = lock.acquire()
    try:
        try:
            paths.inbox.mkdir(mode=0o700, exist_ok=True)
            setup_logging(paths, to_stderr=not detached, debug=debug)
        except OSError as exc:
            raise UsageError(f"cannot write the daemon's files in {paths.home}: {exc.strerror or exc}") from None
        started = time.time()
        state = {"pid": os.getpid(), "home": str(paths.home), "workers": workers, "started_at": started,
                 "ready": False, "log": str(paths.log)}
        write_atomic(paths.statefile, json.dumps(state))
        daemon: Daemon | None = None
        # Signals that arrive while the heavy modules import are kept and handled by the main loop.
        early: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: early.append(signum))
        logger.info("daemon starting: pid %d, home %s, python %s", os.getpid(), paths.home, sys.version.split()[0])
        if stale is not None:
            logger.info("replaced a stale pidfile (pid %d was not running)", stale)

        import autotune.study.runner  # noqa: F401  (torch, Optuna, the engine: before we say we are ready)

        from autotune.devices import DevicePool

        # one trial per group of gpus_per_trial GPUs by default; more workers share GPUs
        pool = DevicePool.for_cuda(capacity=workers, per_trial=gpus_per_trial or 1)
        if gpus_per_trial is not None and not pool.indices:
            raise UsageError(f"--gpus-per-trial {gpus_per_trial}: no CUDA GPUs here")
        workers = pool.capacity
        daemon = Daemon(paths, workers, pool, state)
        daemon.install_signal_handlers()
        daemon.signals.extend(early)
        # Ready means fast: the forkserver boots (importing torch again) while this process loads
        # what validation needs; a daemon still booting would slow the first submissions down.
        forkserver = threading.Thread(target=warm_forkserver, name="forkserver-warmup", daemon=True)
        forkserver.start()
        warm_up()
        forkserver.join(120)
        clean_inbox(paths)
        devices = [str(d) for d in pool.indices]
        daemon.publish(workers=workers, ready=True, devices=devices or ["cpu"], gpus_per_trial=pool.per_trial)
        logger.info("daemon ready: %d workers on %s; log %s", workers,
                    ", ".join(f"cuda device {d}" for d in devices) or "cpu", paths.log)
        status = daemon.serve()
        logger.info("shutdown: removing %s; daemon stopped", paths.pidfile)
        if status != 0:
            lock.release()
            logging.shutdown()
            os._exit(status)  # worker threads may still wait on trial processes: do not join them
        return status
    finally:
        lock.release()


