"""The processes a test started for its AUTOTUNE_HOME: they inherit it, so each test can find
(and, failing, kill) everything it left running: runners, daemons, forkservers, trials,
DataLoader workers.

And `CliHome` (the `cli_home` fixture of tests/conftest.py): a home driven through the real CLI, for
the tests that inject one fault into a small real study (a SIGKILLed or SIGSTOPped trial process, a
SIGKILLed daemon, a damaged database, ...) and then check what a user would: the study reached its
count, or it stopped with exit code 1 and one line saying why (no traceback); no configuration
completed twice; no trial was left RUNNING; no process of that home was left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from autotune.storage.local import Store

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugin_files"
CLI = [sys.executable, "-m", "autotune.cli"]
# slower_data: 4 ms of loading per sample, so a trial trains for a few seconds and can be caught
SLOW = ["--workload", "tests.workloads_for_tests:slower_data", "--space", "quick", "--budget-steps", "8",
        "--confirm", "0", "--seed", "0", "--no-tui"]
QUICK = ["--space", "quick", "--budget-steps", "4", "--confirm", "0", "--seed", "0", "--no-tui"]
TIMEOUT = 300.0


def processes_of(home: Path, *, under: bool = False) -> list[psutil.Process]:
    """Live processes whose AUTOTUNE_HOME is `home` (or, with `under`, any folder below it);
    this process and zombies aside."""
    found = []
    for proc in psutil.process_iter():
        try:
            value = proc.environ().get("AUTOTUNE_HOME", "")
            mine = value.startswith(str(home)) if under else value == str(home)
            if mine and proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def kill_all(procs: list[psutil.Process]) -> list[str]:
    """Kill `procs`; returns what they were running, for the failure message."""
    killed = []
    for proc in procs:
        try:
            killed.append(" ".join(proc.cmdline()[:4]))
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return killed


class CliHome:
    """An AUTOTUNE_HOME driven through the real CLI, in subprocesses started from the checkout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {**os.environ, "AUTOTUNE_HOME": str(path)}

    def run(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*CLI, *args], cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def live_pid(self, study: str, number: int | None = None, *, after_step: int = 1,
                 timeout: float = TIMEOUT) -> tuple[int, int]:
        """(trial number, pid) of a running trial of `study` (trial `number` if given) once it
        has trained `after_step` steps: the moment to inject a fault."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.path / "autotune.db").exists():
                store = Store(self.path / "autotune.db")
                try:
                    for row in store.live_trials(study):
                        if row["pid"] and (number is None or row["number"] == number) \
                                and (row["step"] or 0) >= after_step:
                            return row["number"], row["pid"]
                finally:
                    store.close()
            time.sleep(0.05)
        raise AssertionError(f"no running trial {number} of {study} within {timeout} s")

    def trials(self, study: str) -> list[FrozenTrial]:
        url = f"sqlite:///{self.path / 'studies.db'}"
        return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)

    def leftovers(self) -> list[psutil.Process]:
        return processes_of(self.path)


def finished(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("autotune: error:")]


def assert_sound(home: CliHome, study: str, n_trials: int | None = None) -> list[FrozenTrial]:
    """No trial left RUNNING, no configuration completed both as itself and as its retry, the
    count reached when given, no process of this home alive a moment later."""
    trials = home.trials(study)
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    complete = {t.number for t in trials if t.state == TrialState.COMPLETE}
    for t in trials:
        if t.user_attrs.get("retry_of") is not None and t.state == TrialState.COMPLETE:
            assert t.user_attrs["retry_of"] not in complete, f"trial {t.number} and the trial it retries completed"
    if n_trials is not None:
        from autotune.study.slots import counted_in

        assert counted_in(trials) == n_trials
    deadline = time.monotonic() + 15
    while home.leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert home.leftovers() == []
    return trials
