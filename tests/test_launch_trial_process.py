"""The trial process (autotune.launch.trial_process): its watchdog notices a stopped trial and
allows a multiple of the median step, and a trial process dies with the runner that started it.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
from optuna.trial import TrialState

from home_processes import SLOW, CliHome, assert_sound, finished


def test_sigstop_of_a_trial_process_is_noticed_by_the_watchdog(cli_home: CliHome) -> None:
    # --objective accuracy: trials train their whole budget (none stops at the target), so there
    # is time to catch one mid-training
    proc = cli_home.start("study", "start", "--name", "st", "--n-trials", "3", "--stall-timeout", "2", *SLOW,
                          "--objective", "accuracy", "--budget-steps", "16")
    number, pid = cli_home.live_pid("st", 1, after_step=2)
    os.kill(pid, signal.SIGSTOP)
    code, _, err = finished(proc)
    assert code == 0, err[-3000:]
    trials = assert_sound(cli_home, "st", 3)
    stopped = next(t for t in trials if t.number == number)
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["autotune_status"] == "stalled"
    assert stopped.user_attrs["reason"].startswith("no progress for ")


def test_9_the_watchdog_allows_a_multiple_of_the_median_step() -> None:
    from autotune.launch.trial_process import Watchdog

    dog = Watchdog(floor=2.0)
    assert dog.allowance() == 20.0  # before the first step: time to start, load and compile
    for step in range(1, 6):
        dog.heard("progress", {"step": step, "train_time": step * 0.5})
    assert dog.allowance() == 5.0 and dog.stalled() is None  # 10 x 0.5 s a step
    dog.last -= 6
    assert dog.stalled() is not None


def test_19_a_trial_process_dies_with_its_runner(cli_home: CliHome) -> None:
    proc = cli_home.start("study", "start", "--name", "orphan", "--n-trials", "3", *SLOW)
    _, pid = cli_home.live_pid("orphan", 0)
    proc.kill()  # SIGKILL: no handler runs in the runner
    proc.wait(30)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the trial process outlived its runner by 5 s"
        time.sleep(0.1)
