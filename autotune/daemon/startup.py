"""Getting a daemon process ready: its log, a warmed-up validation path and trial forkserver."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time

from autotune.daemon.files import DaemonPaths

logger = logging.getLogger("autotune.daemon.server")

LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3


def setup_logging(paths: DaemonPaths, to_stderr: bool, debug: bool) -> None:
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


def warm_up() -> None:
    """Validate a default study once (plugins, hardware fingerprint, the default workload's data,
    the storage and its schema), so the first `study start --detach` is answered as fast as the
    later ones. Writes nothing but the storage's schema."""
    started = time.monotonic()
    try:
        from autotune.spec import StudySpec
        from autotune.study.prepare import prepare

        prepare(StudySpec(name="daemon-warm-up"))
    except Exception as exc:  # a broken plugin fails the studies that load it, not the daemon
        logger.warning("warm-up incomplete: %s", exc)
    logger.info("warmed up in %.1f s", time.monotonic() - started)


def warm_forkserver() -> None:
    """Boot the trial forkserver (it preloads torch and the engine) before the first trial needs it."""
    try:
        from autotune.launch.trial_process import context

        ctx = context()
        started = time.monotonic()
        probe = ctx.Process(target=time.sleep, args=(0,), name="autotune-forkserver-probe")
        probe.start()  # returns once the server has finished its preloads and forked
        probe.join(60)
        logger.info("trial forkserver ready in %.1f s", time.monotonic() - started)
    except Exception:
        logger.exception("could not start the trial forkserver; trials start it on demand")
