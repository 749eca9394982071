"""Distributed studies on a real PostgreSQL server: several `autotune worker` processes share a
study, one is SIGKILLed mid-trial, `study show` and the UI's data layer read it back.

Skips (does not fail) when no PostgreSQL server binaries or no psycopg2 are installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import FrozenTrial, TrialState

from autotune.storage.rdb import sqlalchemy_url

sys.path.insert(0, str(Path(__file__).parent))
from home_processes import kill_all, processes_of  # noqa: E402
from pg import PostgresServer  # noqa: E402

STUDY_ARGS = ["--workload", "digits", "--space", "quick", "--budget-epochs", "1", "--confirm", "0"]
HOST = socket.gethostname()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pg():
    if PostgresServer.find_bin() is None:
        pytest.skip(PostgresServer.missing_reason())
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install 'autotune[postgres]'")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def no_process_left_behind(tmp_path: Path):
    """Regression (faults #15): the workers' forkservers and trial processes outlived the suite.
    Every process a test started for its homes (workers, forkservers, trials, DataLoader
    workers) must be gone shortly after the test."""
    yield
    deadline = time.monotonic() + 20
    while processes_of(tmp_path, under=True) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kill_all(processes_of(tmp_path, under=True)) == []


class Proc:
    """An `autotune` process whose output goes to files (no pipe to drain, none to block on)."""

    def __init__(self, args: tuple[str, ...], home: Path, env: dict[str, str] | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = home / "stdout.txt", home / "stderr.txt"
        full_env = {**os.environ, "AUTOTUNE_HOME": str(home), "AUTOTUNE_LOAD_PLUGINS": "", **(env or {})}
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen([sys.executable, "-m", "autotune.cli", *args], env=full_env,
                                          stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.args = args
        self.pid = self.popen.pid

    @property
    def out(self) -> str:
        return self.out_path.read_text()

    @property
    def err(self) -> str:
        return self.err_path.read_text()

    def finish(self, timeout: float = 240) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"autotune {' '.join(self.args[:3])} did not finish in {timeout} s:\n{self.err[-3000:]}")


def autotune(*args: str, home: Path, env: dict[str, str] | None = None) -> Proc:
    return Proc(args, home, env)


def lineage(t: FrozenTrial) -> int:
    """The trial a retry stands for: Optuna's failed_trial, our retry_of, or the trial itself."""
    root = t.system_attrs.get("failed_trial", t.user_attrs.get("retry_of"))
    return t.number if root is None else root


def assert_recorded_once(study: optuna.Study, n_trials: int) -> list[FrozenTrial]:
    """Every trial counted once: unique numbers, one finished trial per lineage, nothing left
    running, exactly n_trials counted. Returns the counted trials."""
    from autotune.study.slots import counted_trials

    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), numbers
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    trained = [t for t in trials if t.user_attrs.get("autotune_status") != "surplus"]
    retried = {lineage(t) for t in trained if lineage(t) != t.number}
    counted = [t for t in trained if t.number not in retried]
    roots = [lineage(t) for t in counted]
    assert len(roots) == len(set(roots)), f"a lineage counted twice: {roots}"
    assert counted_trials(study) == len(counted) == n_trials
    for t in counted:  # each trained under its own slot
        assert t.user_attrs.get("slot") == t.number, (t.number, t.user_attrs)
    baselines = [t for t in counted if t.user_attrs.get("baseline")]
    assert len(baselines) == 1 and baselines[0].state == TrialState.COMPLETE
    assert study.user_attrs["target"] is not None
    return counted


@pytest.fixture(scope="module")
def shared_study(pg, tmp_path_factory):
    """A study created in PostgreSQL (in-process, as `study start` does, without running it),
    then run to its count by three `autotune worker` processes started at once."""
    from autotune.storage.local import Store
    from autotune.spec import StudySpec
    from autotune.study.prepare import prepare
    from autotune.study.runner import StudyRunner

    root = tmp_path_factory.mktemp("shared")
    url = pg.create_database("shared")
    creator = root / "creator"
    old = os.environ.get("AUTOTUNE_HOME")
    os.environ["AUTOTUNE_HOME"] = str(creator)
    try:
        spec = StudySpec(name="pg", workload="digits", space="quick", n_trials=6, budget={"epochs": 1},
                         confirm=0, storage=url, seed=3)
        StudyRunner(prepare(spec), Store()).open()
    finally:
        if old is None:
            del os.environ["AUTOTUNE_HOME"]
        else:
            os.environ["AUTOTUNE_HOME"] = old
    homes = [root / f"machine{i}" for i in range(3)]
    started = time.monotonic()
    procs = [autotune("worker", "--storage", url, "--study", "pg", "--json", home=h) for h in homes]
    for proc in procs:
        assert proc.finish() == 0, proc.err[-3000:]
    # `url` is what users type (postgresql://, no driver); `direct` names the installed driver,
    # for Optuna calls made here and for what autotune records
    return {"url": url, "direct": sqlalchemy_url(url), "homes": homes, "outputs": [p.out for p in procs],
            "seconds": time.monotonic() - started, "creator": creator}


def test_three_workers_share_a_study_and_record_each_trial_once(shared_study):
    study = optuna.load_study(study_name="pg", storage=shared_study["direct"])
    counted = assert_recorded_once(study, 6)
    assert [t.number for t in study.get_trials() if t.user_attrs.get("baseline")] == [0]  # enqueued once
    runners = {t.user_attrs["runner"] for t in counted}
    assert len(runners) >= 2, f"one worker ran everything: {runners}"
    assert all(r.startswith(f"{HOST}:") for r in runners)
    # what other machines see of a running trial: the throttled "live" attribute
    lives = [t.user_attrs["live"] for t in counted if "live" in t.user_attrs]
    assert lives and set(lives[0]) == {"samples_per_s", "step", "fraction", "updated"}
    # every worker reports the whole study, not only its own trials
    for out in shared_study["outputs"]:
        report = json.loads(out)
        assert report["storage"] == shared_study["direct"] and "confirmation" not in report
        assert sum(report["counts"][k] for k in ("complete", "pruned", "failed")) == 6
    # each machine keeps its own local state: its store knows the study and where it lives
    for home in shared_study["homes"]:
        with sqlite3.connect(home / "autotune.db") as conn:
            row = conn.execute("select storage, status from studies where name = 'pg'").fetchone()
        assert row == (shared_study["direct"], "finished")


def test_study_show_and_the_ui_data_read_a_postgres_study(shared_study, tmp_path):
    home = shared_study["homes"][0]
    study = optuna.load_study(study_name="pg", storage=shared_study["direct"])
    # on a machine that ran the study (storage from its local state), and on any other (--storage)
    for args, where in ((), home), (("--storage", shared_study["direct"]), tmp_path):
        proc = autotune("study", "show", "pg", *args, "--json", home=where)
        assert proc.finish(120) == 0, proc.err
        data = json.loads(proc.out)
        assert len(data["trials"]) == len(study.get_trials())
        assert json.dumps(data["summary"])  # rendered without error

    from autotune.tui.data import Watcher  # the terminal UI's data layer (no Textual)

    watcher = Watcher(home / "autotune.db")
    try:
        snap = watcher.poll("pg", target="test")
    finally:
        watcher.close()
    assert not snap.errors, snap.errors
    assert snap.study is not None and snap.study.total_rows == len(study.get_trials())


def test_worker_refuses_a_study_that_does_not_exist(pg, tmp_path):
    url = pg.create_database("empty")
    proc = autotune("worker", "--storage", url, "--study", "nope", home=tmp_path)
    assert proc.finish(120) == 2
    lines = proc.err.strip().splitlines()
    assert len(lines) == 1 and "no study 'nope'" in lines[0] and "autotune study start" in lines[0], proc.err


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killed_worker_trial_is_failed_and_retried_by_the_others(pg, tmp_path):
    """`study start` creates the study in PostgreSQL and runs trials; two workers join; one is
    SIGKILLed while training. The survivors fail its trial (heartbeat) and run the retry."""
    url = pg.create_database("kill")
    # slow trials: with digits' second-long trials the creator could take every slot before
    # the workers finish importing torch on a loaded machine, and the victim would have no trial
    fast = {"AUTOTUNE_HEARTBEAT_GRACE": "6", "PYTHONPATH": str(ROOT)}
    n_trials = 4
    slow_args = ["--workload", "tests.workloads_for_tests:slower_data", *STUDY_ARGS[2:]]
    start = autotune("study", "start", "--name", "pgk", "--storage", url, "--n-trials", str(n_trials),
                     *slow_args, "--no-tui", "--json", home=tmp_path / "m0", env=fast)
    deadline = time.monotonic() + 120
    while True:  # the workers need the study to exist
        try:
            if optuna.load_study(study_name="pgk", storage=sqlalchemy_url(url)).user_attrs.get("autotune"):
                break
        except KeyError:
            pass
        assert start.popen.poll() is None, start.err[-3000:]
        assert time.monotonic() < deadline, "study start did not create the study"
        time.sleep(0.5)
    victim = autotune("worker", "--storage", url, "--study", "pgk", home=tmp_path / "m1", env=fast)
    survivor = autotune("worker", "--storage", url, "--study", "pgk", home=tmp_path / "m2", env=fast)

    storage = optuna.storages.RDBStorage(sqlalchemy_url(url))
    killed = None
    deadline = time.monotonic() + 180
    while killed is None:
        assert victim.popen.poll() is None, victim.err[-3000:]
        assert time.monotonic() < deadline, "the victim never trained a trial"
        time.sleep(0.5)
        for t in optuna.load_study(study_name="pgk", storage=storage).get_trials(states=(TrialState.RUNNING,)):
            # mid-trial: it holds a slot and has reported training progress ("live")
            if t.user_attrs.get("runner") == f"{HOST}:{victim.pid}" and t.user_attrs.get("slot") == t.number \
                    and "live" in t.user_attrs:
                descendants = psutil.Process(victim.pid).children(recursive=True)
                victim.popen.send_signal(signal.SIGKILL)
                victim.popen.wait()
                killed = t.number
                break
    # its trial process (and the forkserver) do not outlive it
    deadline = time.monotonic() + 30
    while any(_alive(p.pid) for p in descendants) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p.pid for p in descendants if _alive(p.pid)], "the killed worker's processes survived it"

    for proc in (start, survivor):
        assert proc.finish() == 0, proc.err[-3000:]
    study = optuna.load_study(study_name="pgk", storage=storage)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[killed].state == TrialState.FAIL
    retries = [t for t in trials.values()
               if t.system_attrs.get("failed_trial") == killed or t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1, [(t.number, t.system_attrs, t.user_attrs.get("retry_of")) for t in retries]
    retry = retries[0]
    # Optuna's heartbeat path (not autotune's same-host pid check): the survivors noticed it
    assert retry.system_attrs.get("failed_trial") == killed
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    assert retry.user_attrs["runner"] != f"{HOST}:{victim.pid}"
    assert retry.params == trials[killed].params  # the same configuration, run again
    assert_recorded_once(study, n_trials)
    report = json.loads(start.out)  # `study start` reports the whole study
    assert sum(report["counts"][k] for k in ("complete", "pruned", "failed")) == n_trials + 1  # + the FAIL
