"""The background daemon: runs queued studies, several at once, and survives their failures.

One daemon per AUTOTUNE_HOME. Its files, all private to the user (home 0o700, files 0o600):

    $AUTOTUNE_HOME/daemon.pid        the daemon's pid, written atomically (tmp + os.replace)
    $AUTOTUNE_HOME/daemon.lock       flock()ed for the daemon's lifetime: the real "one daemon" guard
    $AUTOTUNE_HOME/daemon.json       pid, workers, start time, and whether it is ready for work
    $AUTOTUNE_HOME/daemon-inbox/     submissions from `study start --detach`, validated by the daemon
    $AUTOTUNE_HOME/logs/daemon.log   rotating log; logs/daemon.out catches a detached daemon's stderr

There is no network listener. Control goes through autotune's database (a study's status, a trial's
kill flag: `autotune study pause/resume/stop`), the inbox directory, and signals: the first
SIGTERM/SIGINT drains (no new trial starts, running trials finish and are recorded, the drained
studies go back to the queue), a second one stops running trials now (they run again next time).

Importing this module is cheap (no torch, no Optuna): the CLI's `daemon status` and `daemon stop`
use it. The daemon process imports the heavy parts once it holds its lock.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotune.errors import AutotuneError, UsageError
from autotune.home import autotune_home
from autotune.storage import pid_alive

if TYPE_CHECKING:
    from autotune.devices import DevicePool
    from autotune.spec import StudySpec
    from autotune.store import Store
    from autotune.study import Prepared

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often the store is read for queued studies
TICK_SECONDS = 0.1  # how often signals and the inbox are looked at
FORCE_GRACE_SECONDS = 15.0  # after a second signal, how long stopped trials get to be recorded
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3


class DaemonError(AutotuneError):
    """A daemon that is (or is not) running when the command needs the opposite, or one that failed."""

    exit_code = 1


# files and pids ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonPaths:
    """Where one home's daemon keeps its files."""

    home: Path

    @classmethod
    def current(cls) -> "DaemonPaths":
        return cls(autotune_home().absolute())

    @property
    def pidfile(self) -> Path:
        return self.home / "daemon.pid"

    @property
    def lockfile(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def statefile(self) -> Path:
        return self.home / "daemon.json"

    @property
    def inbox(self) -> Path:
        return self.home / "daemon-inbox"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def log(self) -> Path:
        return self.logs / "daemon.log"

    @property
    def out(self) -> Path:
        return self.logs / "daemon.out"


def ensure_home(home: Path | None = None) -> Path:
    """Create the home directory (0o700) and its logs folder; one clear error if that fails."""
    home = (home or autotune_home()).absolute()
    try:
        created = not home.exists()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created or (home.stat().st_uid == os.getuid() and home.stat().st_mode & 0o077):
            os.chmod(home, 0o700)
        (home / "logs").mkdir(mode=0o700, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.touch(mode=0o600)
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"AUTOTUNE_HOME {home} is not usable ({reason}); point AUTOTUNE_HOME at a writable directory"
        ) from None
    return home


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old or the new content, never a part (mode 0o600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments; [] for a zombie; None when they cannot be read."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        try:
            raw = proc.read_bytes()
        except FileNotFoundError:
            return []
        except OSError:
            return None
        return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
    try:
        import psutil

        return psutil.Process(pid).cmdline()
    except ImportError:
        return None
    except Exception:  # NoSuchProcess, ZombieProcess, AccessDenied
        return []


def looks_like_daemon(pid: int) -> bool:
    """True when `pid` is alive and its command line is an autotune daemon (not a reused pid)."""
    if pid <= 0 or not pid_alive(pid):
        return False
    args = _cmdline(pid)
    if args is None:  # cannot tell: trust os.kill
        return True
    return any("autotune" in a for a in args) and "daemon" in args


def read_pidfile(paths: DaemonPaths) -> int | None:
    try:
        text = paths.pidfile.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def running_pid(paths: DaemonPaths | None = None) -> int | None:
    """The pid of this home's daemon, or None when there is none (a stale pidfile counts as none)."""
    paths = paths or DaemonPaths.current()
    pid = read_pidfile(paths)
    if pid is None or pid == os.getpid() or not looks_like_daemon(pid):
        return None
    return pid


def read_state(paths: DaemonPaths) -> dict[str, Any]:
    try:
        return json.loads(paths.statefile.read_text())
    except (OSError, ValueError):
        return {}


def is_ready(paths: DaemonPaths, pid: int) -> bool:
    """The daemon `pid` has finished starting up and answers submissions."""
    state = read_state(paths)
    return state.get("pid") == pid and bool(state.get("ready"))


# devices -------------------------------------------------------------------------------------


# queueing (shared by the daemon and the client's fallback) ------------------------------------


def check_queueable(store: "Store", name: str) -> None:
    """A study that is already queued or running cannot be queued again."""
    row = store.get_study(name)
    if row is None:
        return
    status = row["status"]
    if status == "paused":
        raise UsageError(f"study '{name}' is paused; resume it with `autotune study resume {name}`")
    if status in ("queued", "running", "stopping"):
        raise UsageError(f"study '{name}' is already {status}; watch it with `autotune tui {name}`")


def queue_study(store: "Store", prepared: "Prepared") -> None:
    """Put a validated study on the daemon's queue (resuming it when the name exists)."""
    import optuna

    spec = prepared.spec
    check_queueable(store, spec.name)
    storage = getattr(prepared, "storage", None)
    if storage is None:
        from autotune.study import open_storage

        storage = open_storage(prepared.storage_url)
    for summary in optuna.get_all_study_summaries(storage):
        if summary.study_name != spec.name:
            continue
        stored = summary.user_attrs.get("autotune", {})
        for key in ("workload", "objective"):
            if stored.get(key) not in (None, getattr(spec, key)):
                raise UsageError(
                    f"study '{spec.name}' exists with {key} '{stored[key]}', not '{getattr(spec, key)}'; "
                    f"pick another --name or `autotune study delete {spec.name}`"
                )
    store.put_study(
        spec.name, storage=prepared.storage_url, workload=spec.workload, space=str(spec.space),
        objective=spec.objective, n_trials=spec.n_trials, spec=spec.to_dict(), status="queued",
    )
    store.add_event(spec.name, "study_queued", f"study {spec.name} queued for the daemon")


# the daemon ----------------------------------------------------------------------------------


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
        self._inbox_busy: set[str] = set()
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
        from autotune.store import Store

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
                    self._check_inbox()
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
                if status in ("running", "paused", "queued"):
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
        from autotune.store import Store
        from autotune.study import StudyRunner, StudySpec, prepare

        name = job.name
        store = Store()
        runner = None
        try:
            spec = StudySpec.from_dict(row["spec"])
            spec.workers = job.workers
            prepared = prepare(spec)
            runner = StudyRunner(prepared, store, reporter=_reporter(name), stop_event=job.stop_event,
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
            for number in _requeue_killed(study, job.killed):
                store.add_event(job.name, "trial_requeued",
                                f"trial {number} was stopped by the daemon's shutdown; it runs again", number)
        store.set_study_status(job.name, job.drain_to)
        store.add_event(job.name, "study_requeued" if job.drain_to == "queued" else "study_paused",
                        f"the daemon shut down; the study is {job.drain_to} and resumes when the daemon starts")
        logger.info("study %s: drained, now %s", job.name, job.drain_to)

    # submissions

    def _check_inbox(self) -> None:
        try:
            entries = list(self.paths.inbox.glob("*.json"))
        except OSError:
            return
        for entry in entries:
            key = entry.stem
            if key in self._inbox_busy:
                continue
            work = entry.with_suffix(".work")
            try:
                os.replace(entry, work)  # claim it
            except OSError:
                continue
            self._inbox_busy.add(key)
            threading.Thread(target=self._handle_submission, args=(key, work), name=f"submit-{key[:8]}",
                             daemon=True).start()

    def _handle_submission(self, key: str, work: Path) -> None:
        reply: dict[str, Any]
        try:
            data = json.loads(work.read_text())
            if self.draining:
                raise DaemonError(f"the daemon (pid {os.getpid()}) is shutting down; run the command again "
                                  f"once it has stopped")
            reply = {"ok": True, **accept_submission(data["spec"])}
        except AutotuneError as exc:
            reply = {"ok": False, "error": str(exc), "exit_code": exc.exit_code}
        except Exception as exc:
            logger.exception("submission %s failed", key)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "exit_code": 1}
        try:
            write_atomic(work.with_suffix(".reply"), json.dumps(reply))
        finally:
            work.unlink(missing_ok=True)
            self._inbox_busy.discard(key)
            self._wake.set()


def validate_and_queue(spec: "StudySpec") -> None:
    """Validate a spec completely (prepare) and put it on the queue; UsageError on bad input."""
    from autotune.store import Store
    from autotune.study import prepare

    prepared = prepare(spec)
    store = Store()
    try:
        queue_study(store, prepared)
    finally:
        store.close()


def accept_submission(spec_data: dict[str, Any]) -> dict[str, Any]:
    """What the daemon does with a submitted spec: validate it and queue it."""
    from autotune.study import StudySpec

    spec = StudySpec.from_dict(spec_data)
    validate_and_queue(spec)
    logger.info("study %s: queued (%s, %d trials, budget %s)", spec.name, spec.workload, spec.n_trials,
                spec.budget_text)
    return {"name": spec.name, "status": "queued", "daemon_pid": os.getpid()}


def _requeue_killed(study: Any, numbers: list[int]) -> list[int]:
    """Enqueue once more the trials a forced shutdown stopped, so they do not count as done."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    done = []
    for t in trials:
        if t.number in numbers and t.state == TrialState.FAIL and t.number not in retried \
                and t.user_attrs.get("autotune_status") == "killed":
            attrs: dict[str, Any] = {"retry_of": t.number}
            if t.user_attrs.get("baseline"):
                attrs["baseline"] = True
            study.enqueue_trial(t.params, user_attrs=attrs)
            done.append(t.number)
    return done


def _reporter(name: str) -> Any:
    def report(kind: str, data: dict[str, Any]) -> None:
        if kind == "trial_started":
            logger.info("study %s: trial %d started%s", name, data["number"], " (baseline)" if data.get("baseline") else "")
        elif kind == "trial_finished":
            detail = data.get("reason") or data.get("value")
            logger.info("study %s: trial %d %s (%s) [%s/%s]", name, data["number"], data["state"].lower(), detail,
                        data.get("done"), data.get("total"))
        elif kind == "confirming":
            logger.info("study %s: confirming, %s run %d of %d", name, data["which"], data["run"], data["of"])
        elif kind in ("paused", "resumed"):
            logger.info("study %s: %s", name, kind)

    return report


# process setup -------------------------------------------------------------------------------


class _PidLock:
    """flock() on daemon.lock for the daemon's lifetime, plus the pidfile that names the holder."""

    def __init__(self, paths: DaemonPaths) -> None:
        self.paths = paths
        self.fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock and write the pidfile; returns the pid of a stale pidfile it replaced."""
        import fcntl

        fd = os.open(self.paths.lockfile, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            pid = read_pidfile(self.paths)
            where = f"pid {pid}" if pid is not None else "starting up"
            raise DaemonError(
                f"an autotune daemon is already running ({where}, home {self.paths.home}); "
                f"stop it with `autotune daemon stop`"
            ) from None
        self.fd = fd
        stale = read_pidfile(self.paths)
        write_atomic(self.paths.pidfile, f"{os.getpid()}\n")
        return stale if stale != os.getpid() else None

    def release(self) -> None:
        if read_pidfile(self.paths) == os.getpid():
            self.paths.pidfile.unlink(missing_ok=True)
            self.paths.statefile.unlink(missing_ok=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _setup_logging(paths: DaemonPaths, to_stderr: bool, debug: bool) -> None:
    """The daemon's log: a rotating file (0o600), plus stderr when run by hand or by a supervisor."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.handlers.RotatingFileHandler(paths.log, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS,
                                                   encoding="utf-8")
    os.chmod(paths.log, 0o600)
    fmt = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        root.addHandler(stream)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.captureWarnings(True)
    for noisy in ("optuna", "sqlite_utils", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug and noisy == "optuna" else logging.WARNING)


def _warm_up() -> None:
    """Validate a default study once (plugins, hardware fingerprint, the default workload's data,
    the storage and its schema), so the first `study start --detach` is answered as fast as the
    later ones. Writes nothing but the storage's schema."""
    started = time.monotonic()
    try:
        from autotune.study import StudySpec, prepare

        prepare(StudySpec(name="daemon-warm-up"))
    except Exception as exc:  # a broken plugin fails the studies that load it, not the daemon
        logger.warning("warm-up incomplete: %s", exc)
    logger.info("warmed up in %.1f s", time.monotonic() - started)


def _warm_forkserver() -> None:
    """Boot the trial forkserver (it preloads torch and the engine) before the first trial needs it."""
    try:
        from autotune.trial_process import context

        ctx = context()
        started = time.monotonic()
        probe = ctx.Process(target=time.sleep, args=(0,), name="autotune-forkserver-probe")
        probe.start()  # returns once the server has finished its preloads and forked
        probe.join(60)
        logger.info("trial forkserver ready in %.1f s", time.monotonic() - started)
    except Exception:
        logger.exception("could not start the trial forkserver; trials start it on demand")


def run_foreground(
    workers: int | None = None, detached: bool = False, debug: bool = False, gpus_per_trial: int | None = None
) -> int:
    """Run the daemon in this process until it is told to stop. Returns the exit status."""
    paths = DaemonPaths(ensure_home())
    os.umask(0o077)
    lock = _PidLock(paths)
    stale = lock.acquire()
    try:
        try:
            paths.inbox.mkdir(mode=0o700, exist_ok=True)
            _setup_logging(paths, to_stderr=not detached, debug=debug)
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

        import autotune.study  # noqa: F401  (torch, Optuna, the engine: before we say we are ready)

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
        forkserver = threading.Thread(target=_warm_forkserver, name="forkserver-warmup", daemon=True)
        forkserver.start()
        _warm_up()
        forkserver.join(120)
        _clean_inbox(paths)
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


def _clean_inbox(paths: DaemonPaths) -> None:
    """Leftovers from a previous daemon: unanswered claims go back to the inbox; old replies go."""
    for entry in paths.inbox.glob("*"):
        try:
            if entry.suffix == ".work":
                os.replace(entry, entry.with_suffix(".json"))
            elif entry.suffix == ".reply" and time.time() - entry.stat().st_mtime > 300:
                entry.unlink()
        except OSError:
            pass


def new_submission_id() -> str:
    return uuid.uuid4().hex
