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


# Every searched trial trains at a learning rate that cannot reach the baseline's target, so each
# is pruned with a reason, and the reasons are long: they must be readable whole.
HOPELESS_SPACE = """
only = ["learning_rate"]
[knobs.learning_rate]
choices = [1e-7]
"""
RAW_PYTHON = re.compile(r"[{\[]['\"]|'\w+': ")  # {'complete': 1, ...}, ['a', ...]


class Terminal:
    """`autotune tui NAME` in a tmux session of its own, read back with capture-pane."""

    def __init__(self, name: str, home: Path, env: dict[str, str], size: tuple[int, int] = (200, 50)) -> None:
        self.session = f"autotune-test-{os.getpid()}-{name}"
        command = " ".join([*CLI, "tui", name])
        # The pane starts at tmux's default size and is resized after: a program started with
        # the session may read the old size. So: the session first, the program once it is sized.
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(size[0]), "-y", str(size[1]),
                        "sleep 600"], check=True)
        wanted = f"{size[0]}x{size[1]}"
        for _ in range(100):
            shown = subprocess.run(["tmux", "display-message", "-p", "-t", self.session,
                                    "#{pane_width}x#{pane_height}"], capture_output=True, text=True).stdout.strip()
            if shown == wanted:
                break
            subprocess.run(["tmux", "resize-window", "-t", self.session, "-x", str(size[0]), "-y", str(size[1])],
                           capture_output=True)
            time.sleep(0.05)
        subprocess.run(["tmux", "respawn-pane", "-k", "-t", self.session,
                        # COLUMNS and LINES (pytest's, in tmux's server) would override the pane's size
                        f"env -u COLUMNS -u LINES AUTOTUNE_HOME={home} PYTHONPATH={env['PYTHONPATH']} "
                        f"TERM=xterm-256color {command}"],
                       check=True)
        self.screens: list[str] = []

    def capture(self) -> str:
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session],
                                capture_output=True, text=True).stdout
        self.screens.append(screen)
        return screen

    def wait_for(self, condition, what: str, timeout: float = 120.0) -> str:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if condition(screen):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def panel_text(screen: str, title: str) -> str | None:
    """The text inside the bordered panel whose title starts with `title`, its wrapped lines
    joined by spaces; None when no such panel is on the screen."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        at = line.find("╭─ " + title)
        if at < 0:
            continue
        end = line.index("╮", at)
        inside = []
        for below in lines[i + 1:]:
            if below[at:at + 1] != "│":
                break
            inside.append(below[at + 1:end].strip())
        return " ".join(part for part in inside if part)
    return None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_tui_in_a_terminal_shows_reasons_queued_studies_and_the_metric(home, tmp_path):
    """Two real studies handed to a real daemon (one worker), watched in real terminals: the
    queued one says so and what it waits for from its first screen (never "no study"); the
    running one shows a pruning reason whole, its metric's name, and its count moving forward; no line
    of any screen holds a raw Python dict or list."""
    space = tmp_path / "hopeless.toml"
    space.write_text(HOPELESS_SPACE)
    env = {**os.environ, "AUTOTUNE_HOME": str(home), "TERM": "xterm-256color",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    study = ["--workload", "tests.workloads_for_tests:regression", "--space", str(space), "--budget-steps", "40",
             "--confirm", "0", "--seed", "1"]
    subprocess.run([*CLI, "daemon", "start", "--workers", "1"], env=env, check=True, capture_output=True, timeout=120)
    terminals: list[Terminal] = []
    try:
        for name, n in (("first", 3), ("second", 2)):
            submit = subprocess.run([*CLI, "study", "start", "--detach", "--name", name, "--n-trials", str(n), *study],
                                    env=env, capture_output=True, text=True, timeout=60)
            assert submit.returncode == 0, submit.stderr
        queued = Terminal("second", home, env)
        terminals.append(queued)
        # from the first screen that shows the study at all, it is queued behind 'first'
        screen = queued.wait_for(lambda s: "second ·" in s, "the queued study's header", timeout=60)
        # 2nd while the daemon has not taken 'first' yet either
        assert re.search(r"queued: (1st|2nd) in the daemon's queue, behind 'first' \((running|queued)\)", screen), screen
        queued.wait_for(lambda s: "trials: none yet, waiting for the daemon to start this study" in s,
                        "the empty trials panel to say why", timeout=30)

        running = Terminal("first", home, env)
        terminals.append(running)

        def pruned_reason_shown(screen: str) -> bool:
            shown = panel_text(screen, "why trial ")
            return bool(shown) and "/3 trials" in screen
        screen = running.wait_for(pruned_reason_shown, "a pruning reason", timeout=180)
        title = re.search(r"why trial (\d+) was pruned", screen)
        assert title, screen
        reason = trials(home, "first")[int(title.group(1))].user_attrs["reason"]
        assert len(reason) > 60  # a reason that a fixed-width cell used to cut
        assert " ".join(reason.split()) in panel_text(screen, "why trial "), screen
        assert "metric val_mse ↓ (lower is better)" in screen  # the primary metric and its direction
        assert "val_mse ↓" in screen  # the trials table's metric column
        running.wait_for(lambda s: "3/3 trials" in s, "the first study to finish", timeout=180)
        # the count only moves forward (how far the study was when the UI opened is a race: a
        # 40-step trial of this workload takes about a second)
        counts = [int(m.group(1)) for s in running.screens if (m := re.search(r"(\d+)/3 trials", s))]
        assert counts == sorted(counts) and counts[-1] == 3, counts

        # the queued study goes live once the daemon starts it: the same screen, no reopening
        live = queued.wait_for(lambda s: re.search(r"(running|finished) · \d/2 trials", s),
                               "the second study to start", timeout=120)
        assert "queued:" not in live and re.search(r"trials \(\d\)", live), live  # its trials table
        for screen in queued.screens + running.screens:
            assert "no study" not in screen, screen
            for line in screen.splitlines():
                assert not RAW_PYTHON.search(line), line
    finally:
        for terminal in terminals:
            terminal.close()
        subprocess.run([*CLI, "daemon", "stop", "--force"], env=env, capture_output=True, timeout=180)
