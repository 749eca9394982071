"""Faults injected into small real studies: no single fault ruins a study, none passes silently.

Each test runs the real CLI in its own AUTOTUNE_HOME and injects one fault: a SIGKILLed or
SIGSTOPped trial process (the baseline's or another's), a SIGKILLed daemon, a damaged database,
two studies starting at the same instant on a fresh home, a plugin whose knob raises in every
trial. Each then checks what a user would: the study reached its count, or it stopped with exit
code 1 and one line saying why (no traceback); no configuration completed twice; no trial was
left RUNNING; no process of that home was left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import psutil
import pytest
from optuna.trial import FrozenTrial, TrialState

from autotune.storage.local import Store

sys.path.insert(0, str(Path(__file__).parent))
from home_processes import kill_all, processes_of  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugin_files"
CLI = [sys.executable, "-m", "autotune.cli"]
# slower_data: 4 ms of loading per sample, so a trial trains for a few seconds and can be caught
SLOW = ["--workload", "tests.workloads_for_tests:slower_data", "--space", "quick", "--budget-steps", "8",
        "--confirm", "0", "--seed", "0", "--no-tui"]
TIMEOUT = 300.0


class Home:
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


@pytest.fixture
def home(tmp_path: Path) -> Any:
    h = Home(tmp_path / "home")
    yield h
    kill_all(h.leftovers())  # a failing test must not leave trials training on the shared cores


def finished(proc: subprocess.Popen[str], timeout: float = TIMEOUT) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("autotune: error:")]


def assert_sound(home: Home, study: str, n_trials: int | None = None) -> list[FrozenTrial]:
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


def test_sigkill_of_the_baseline_trial_process_reruns_the_baseline(home: Home) -> None:
    proc = home.start("study", "start", "--name", "kb", "--n-trials", "3", *SLOW)
    number, pid = home.live_pid("kb", 0)
    os.kill(pid, signal.SIGKILL)
    code, _, err = finished(proc)
    assert code == 0, err[-3000:]
    trials = assert_sound(home, "kb", 3)
    baselines = [t for t in trials if t.user_attrs.get("baseline")]
    assert baselines[0].state == TrialState.FAIL and "SIGKILL" in baselines[0].user_attrs["reason"]
    assert baselines[1].state == TrialState.COMPLETE and baselines[1].user_attrs["retry_of"] == 0
    assert "not run" not in err and "target accuracy None" not in err


def test_sigkill_of_another_trial_process_fails_only_that_trial(home: Home) -> None:
    proc = home.start("study", "start", "--name", "ko", "--n-trials", "3", *SLOW)
    number, pid = home.live_pid("ko", 1)
    os.kill(pid, signal.SIGKILL)
    code, _, err = finished(proc)
    assert code == 0, err[-3000:]
    trials = assert_sound(home, "ko", 3)
    killed = next(t for t in trials if t.number == number)
    assert killed.state == TrialState.FAIL and "SIGKILL" in killed.user_attrs["reason"]


def test_sigstop_of_a_trial_process_is_noticed_by_the_watchdog(home: Home) -> None:
    # --objective accuracy: trials train their whole budget (none stops at the target), so there
    # is time to catch one mid-training
    proc = home.start("study", "start", "--name", "st", "--n-trials", "3", "--stall-timeout", "2", *SLOW,
                      "--objective", "accuracy", "--budget-steps", "16")
    number, pid = home.live_pid("st", 1, after_step=2)
    os.kill(pid, signal.SIGSTOP)
    code, _, err = finished(proc)
    assert code == 0, err[-3000:]
    trials = assert_sound(home, "st", 3)
    stopped = next(t for t in trials if t.number == number)
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["autotune_status"] == "stalled"
    assert stopped.user_attrs["reason"].startswith("no progress for ")


def test_sigkill_of_the_daemon_loses_no_finished_trial(home: Home) -> None:
    started = home.run("daemon", "start")
    assert started.returncode == 0, started.stderr
    submitted = home.run("study", "start", "--detach", "--name", "dk", "--n-trials", "3", *SLOW[:-1])
    assert submitted.returncode == 0, submitted.stderr
    home.live_pid("dk", 1)
    before = {t.number for t in home.trials("dk") if t.state.is_finished()}
    os.kill(int((home.path / "daemon.pid").read_text()), signal.SIGKILL)
    restarted = home.run("daemon", "start")
    assert restarted.returncode == 0, restarted.stderr
    deadline = time.monotonic() + TIMEOUT
    while Store(home.path / "autotune.db").study_status("dk") not in ("finished", "failed"):
        assert time.monotonic() < deadline, "the study did not finish after the daemon restarted"
        time.sleep(0.5)
    stopped = home.run("daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert Store(home.path / "autotune.db").study_status("dk") == "finished"
    trials = assert_sound(home, "dk", 3)
    assert before <= {t.number for t in trials if t.state.is_finished()}


def test_a_damaged_database_is_one_line_and_exit_1(home: Home) -> None:
    done = home.run("study", "start", "--name", "ok", "--n-trials", "1", *SLOW)
    assert done.returncode == 0, done.stderr
    for name in ("studies.db", "autotune.db"):
        path = home.path / name
        good = path.read_bytes()
        path.write_bytes(b"garbage!" * 512)
        for command in (["study", "list"], ["study", "show", "ok", "--json"],
                        ["study", "start", "--name", "again", "--n-trials", "1", *SLOW]):
            result = home.run(*command)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            (line,) = error_lines(result.stderr)
            assert "damaged" in line and str(path) in line
        assert path.read_bytes() == b"garbage!" * 512  # nothing was overwritten
        path.write_bytes(good)
    assert_sound(home, "ok", 1)


def test_two_studies_starting_at_once_on_a_fresh_home(home: Home) -> None:
    procs = [home.start("study", "start", "--name", f"twin{i}", "--n-trials", "2", *SLOW) for i in range(2)]
    for proc in procs:
        code, _, err = finished(proc)
        assert code == 0, err[-3000:]
    for i in range(2):
        assert_sound(home, f"twin{i}", 2)


def test_a_knob_that_raises_in_every_trial_stops_the_study_with_exit_1(home: Home) -> None:
    result = home.run("study", "start", "--name", "boom", "--n-trials", "4", *SLOW,
                      "--plugin", str(PLUGINS / "raises_in_apply.py"))
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result.stderr)
    assert "the baseline failed 3 times" in line and "exploding" in line
    # bracketed text is a reason, not console markup: it reaches the trial lines intact
    assert "[enforce fail at alloc_cpu.cpp:127]" in result.stderr
    trials = assert_sound(home, "boom")
    assert [t.state for t in trials if t.user_attrs.get("autotune_status") != "surplus"] == [TrialState.FAIL] * 3
    assert Store(home.path / "autotune.db").get_study("boom")["status"] == "failed"


# One regression test per defect the faults issue listed (numbered as there). ---------------------

QUICK = ["--space", "quick", "--budget-steps", "4", "--confirm", "0", "--seed", "0", "--no-tui"]


def test_2_a_study_in_which_no_trial_completed_exits_1(home: Home) -> None:
    result = home.run("study", "start", "--name", "none", "--n-trials", "2", "--target", "0.9999",
                      "--budget-steps", "2", *QUICK[2:])
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result.stderr)
    assert "study 'none': no trial completed (2 pruned, 0 failed)" in line
    assert Store(home.path / "autotune.db").get_study("none")["status"] == "failed"
    assert_sound(home, "none")


def test_3_and_4_a_folder_named_autotune_does_not_shadow_it_and_modules_there_are_found(
    home: Home, tmp_path: Path
) -> None:
    here = tmp_path / "work"
    (here / "autotune").mkdir(parents=True)  # as in the folder above a checkout named autotune
    (here / "autotune" / "README").write_text("not the package")
    (here / "mine.py").write_text(
        "from autotune.plugins.workloads.catalog import digits\n\ndef factory():\n    return digits()\n"
    )
    env = dict(home.env)
    env.pop("PYTHONPATH", None)
    autotune = str(Path(sys.executable).with_name("autotune"))
    run = [autotune, "trial", "run", "--workload", "mine:factory", "--budget-steps", "2", "--json"]
    trial = subprocess.run(run, cwd=here, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert trial.returncode == 0, trial.stderr[-2000:]
    study = subprocess.run([autotune, "study", "start", "--name", "here", "--workload", "mine:factory",
                            "--n-trials", "2", *QUICK], cwd=here, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert study.returncode == 0, study.stderr[-2000:]
    trials = assert_sound(home, "here", 2)
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs.get("reason") for t in trials]


@pytest.mark.parametrize("name", ["x" * 500, ".", "..", "a\nb", "", "-x", "a/b", "a b"])
def test_8_study_names_follow_one_rule(home: Home, name: str) -> None:
    result = home.run("study", "start", "--name", name, "--n-trials", "1", *QUICK)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "a study name is 1 to 100 letters, digits, '.', '_' or '-'" in line
    assert not (home.path / "studies.db").exists()  # nothing written on bad input


def test_an_enqueued_setting_the_space_does_not_search_is_one_line_exit_2(home: Home) -> None:
    result = home.run("study", "start", "--name", "q", "--n-trials", "3", "--enqueue", "colour=red", *QUICK)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "--enqueue 'colour=red': 'colour' is not searched by space" in line
    assert not (home.path / "studies.db").exists()


def test_8_files_of_a_study_come_from_a_safe_folder_name() -> None:
    from autotune.home import study_folder

    assert study_folder("demo") != study_folder("demo2") and study_folder("demo").startswith("demo-")
    for odd in ("..", "a/../b", "x" * 500, "a\nb"):
        folder = study_folder(odd)
        assert "/" not in folder and "\n" not in folder and not folder.startswith(".") and len(folder) < 60


def test_10_a_plugin_that_calls_sys_exit_at_import_is_one_line_exit_2(home: Home, tmp_path: Path) -> None:
    plugin = tmp_path / "exits.py"
    plugin.write_text("import sys\nsys.exit(3)\n")
    result = home.run("plugins", "--plugin", str(plugin))
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "exits.py" in line and "sys.exit(3)" in line


def test_11_no_password_is_stored_and_files_are_private(home: Home) -> None:
    done = home.run("study", "start", "--name", "secret", "--n-trials", "1", *QUICK)
    assert done.returncode == 0, done.stderr
    for path in [home.path / "autotune.db", home.path / "studies.db"]:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert home.path.stat().st_mode & 0o777 == 0o700
    store = Store(home.path / "autotune.db")
    store.put_study("pg", storage="postgresql://tuner:s3cret@db:5432/autotune", workload="digits", space="quick",
                    objective="time-to-accuracy", n_trials=1, spec={"storage": "postgresql://tuner:s3cret@db/x"})
    store.close()
    raw = (home.path / "autotune.db").read_bytes() + b"".join(
        p.read_bytes() for p in home.path.glob("autotune.db-wal"))
    assert b"s3cret" not in raw
    assert Store(home.path / "autotune.db").get_study("pg")["storage"] == "postgresql://tuner@db:5432/autotune"


def test_13_an_exported_config_repeats_the_studys_run(home: Home, tmp_path: Path) -> None:
    done = home.run("study", "start", "--name", "ex", "--n-trials", "1", "--space", "quick", "--budget-epochs", "2",
                    "--confirm", "0", "--no-tui")
    assert done.returncode == 0, done.stderr
    best = tmp_path / "best.toml"
    assert home.run("study", "export", "ex", "-o", str(best)).returncode == 0
    result = home.run("trial", "run", "--config", str(best), "--json")
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    study = optuna.load_study(study_name="ex", storage=f"sqlite:///{home.path / 'studies.db'}")
    assert data["budget"] == "2 epochs" and data["target"] == study.user_attrs["target"]
    # validated as often as in the study (4 times an epoch), so time to target means the same
    assert data["time_to_target"] is not None and len(data["curve"]) == len(study.trials[0].intermediate_values)


def test_14_out_of_range_batches_empty_data_and_optunas_warning(home: Home, tmp_path: Path) -> None:
    huge = home.run("trial", "run", "--set", "batch_size=1000000000", "--budget-steps", "2")
    assert huge.returncode == 1
    assert "batch_size 1,000,000,000 is larger than the training set (1,438 samples)" in huge.stderr
    empty = home.run("trial", "run", "--workload", "tests.workloads_for_tests:empty_data", "--budget-steps", "2")
    assert empty.returncode == 2
    (line,) = error_lines(empty.stderr)
    assert "its training set is empty" in line
    space = tmp_path / "narrow.toml"  # the baseline's batch 64 lies outside: it runs as given, quietly
    space.write_text('extends = "quick"\n[knobs.batch_size]\nlow = 128\nhigh = 256\n')
    narrow = home.run("study", "start", "--name", "narrow", "--n-trials", "1", "--space", str(space),
                      "--budget-steps", "2", "--confirm", "0", "--no-tui")
    assert narrow.returncode == 0, narrow.stderr
    assert "Warning" not in narrow.stderr and "out of range" not in narrow.stderr


def test_16_torch_that_cannot_load_is_one_line(home: Home, tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ImportError('libtorch_cpu.so: failed to map segment from shared object')\n")
    env = {**home.env, "PYTHONPATH": str(fake.parent)}
    result = subprocess.run([*CLI, "trial", "run", "--budget-steps", "2"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    (line,) = error_lines(result.stderr)
    assert line.startswith("autotune: error: cannot import torch: libtorch_cpu.so: failed to map segment")


def test_18_a_storage_deleted_under_a_running_study_stops_it(home: Home) -> None:
    proc = home.start("study", "start", "--name", "gone", "--n-trials", "4", *SLOW)
    home.live_pid("gone", 1)
    for path in home.path.glob("studies.db*"):
        path.unlink()
    code, _, err = finished(proc)
    assert code == 1, err[-3000:]
    (line,) = error_lines(err)
    assert "studies.db was deleted or replaced while it ran" in line
    assert Store(home.path / "autotune.db").get_study("gone")["status"] == "failed"
    assert not (home.path / "studies.db").exists()  # not recreated behind the user's back


def test_19_a_trial_process_dies_with_its_runner(home: Home) -> None:
    proc = home.start("study", "start", "--name", "orphan", "--n-trials", "3", *SLOW)
    _, pid = home.live_pid("orphan", 0)
    proc.kill()  # SIGKILL: no handler runs in the runner
    proc.wait(30)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the trial process outlived its runner by 5 s"
        time.sleep(0.1)


def test_19_a_trial_failed_by_heartbeat_says_why() -> None:
    from autotune.storage.trial_row import make_row

    row = make_row(3, "FAIL", None, {}, {}, {"settings": {}}, {}, None, None)
    assert row.reason == "its runner stopped sending heartbeats (it died or hung) before recording a result"
    assert make_row(3, "FAIL", None, {}, {}, {"autotune_status": "oom", "reason": "out of memory"}, {},
                    None, None).reason == "out of memory"


def test_9_the_watchdog_allows_a_multiple_of_the_median_step() -> None:
    from autotune.launch.trial_process import Watchdog

    dog = Watchdog(floor=2.0)
    assert dog.allowance() == 20.0  # before the first step: time to start, load and compile
    for step in range(1, 6):
        dog.heard("progress", {"step": step, "train_time": step * 0.5})
    assert dog.allowance() == 5.0 and dog.stalled() is None  # 10 x 0.5 s a step
    dog.last -= 6
    assert dog.stalled() is not None
