"""Steering real studies: the terminal UI's keys against a study that is really running, and the
`autotune tui` program in a real terminal (tmux) watching a study the daemon runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autotune.storage.local import Store
from autotune.tui.app import AutotuneApp

REPO = Path(__file__).resolve().parents[1]
SIZE = (140, 45)
CLI = [sys.executable, "-m", "autotune.cli"]


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("AUTOTUNE_HOME", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def trials(home: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{home / 'studies.db'}"
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


async def wait_until(pilot, condition, what: str, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def test_keys_pause_resume_and_kill_a_running_study(home, tmp_path):
    log = open(tmp_path / "study.log", "w")
    proc = subprocess.Popen(
        [*CLI, "study", "start", "--name", "steer", "--space", "quick", "--n-trials", "5",
         "--budget-epochs", "5", "--confirm", "0", "--no-tui", "--seed", "3"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        app = AutotuneApp(study="steer", interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            store = Store()

            def live_number() -> int | None:
                rows = [r for r in store.live_trials("steer") if r["pid"]]
                return rows[0]["number"] if rows else None

            # Kill: the key stops the running trial; it is recorded as stopped by the user.
            await wait_until(pilot, lambda: (live_number() or 0) >= 1, "trial 1 to run")
            victim = live_number()
            await pilot.press("k")
            await wait_until(pilot, lambda: any(t.number == victim and t.state == TrialState.FAIL
                                                for t in trials(home, "steer")), "the killed trial")
            killed = trials(home, "steer")[victim]
            assert killed.user_attrs["autotune_status"] == "killed"
            assert killed.user_attrs["reason"] == "stopped by the user"

            # Pause: the running trial may finish, but no new trial starts.
            await wait_until(pilot, lambda: live_number() is not None, "the next trial to run")
            await pilot.press("p")
            assert store.study_status("steer") == "paused"
            await wait_until(pilot, lambda: live_number() is None, "the running trial to finish")
            count = len(trials(home, "steer"))
            await pilot.pause(4.0)
            assert len(trials(home, "steer")) == count and live_number() is None

            # Resume: trials start again.
            await pilot.press("p")
            assert store.study_status("steer") == "running"
            await wait_until(pilot, lambda: len(trials(home, "steer")) > count, "a new trial after resume")

            # Stop: the study ends after its running trial; the process exits cleanly.
            await pilot.press("s")
            assert store.study_status("steer") == "stopping"
        assert proc.wait(120) == 0
        assert Store().study_status("steer") == "stopped"
        assert not [t for t in trials(home, "steer") if t.state == TrialState.RUNNING]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_tui_in_a_terminal_watches_a_detached_study(home, tmp_path):
    env = {**os.environ, "AUTOTUNE_HOME": str(home), "TERM": "xterm-256color"}
    session = f"autotune-test-{os.getpid()}"
    subprocess.run([*CLI, "daemon", "start"], env=env, check=True, capture_output=True, timeout=120)
    try:
        submit = subprocess.run(
            [*CLI, "study", "start", "--detach", "--name", "bg", "--space", "quick", "--n-trials", "4",
             "--budget-epochs", "1", "--confirm", "0"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert submit.returncode == 0, submit.stderr
        command = " ".join([*CLI, "tui", "bg"])
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "140", "-y", "45",
                        f"env AUTOTUNE_HOME={home} TERM=xterm-256color {command}"], check=True)
        seen: list[int] = []
        screen = ""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            time.sleep(1.0)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session],
                                    capture_output=True, text=True).stdout
            match = re.search(r"(\d+)/4 trials", screen)
            if match:
                seen.append(int(match.group(1)))
                if seen[-1] >= 2 and seen[-1] > seen[0]:
                    break
        assert seen and seen[-1] > seen[0], f"finished count never rose: {seen}\n{screen}"
        assert "trials" in screen and "bs=" in screen  # the trials table with settings
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        subprocess.run([*CLI, "daemon", "stop", "--force"], env=env, capture_output=True, timeout=180)
