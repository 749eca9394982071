"""Soak: three concurrent studies with two trials each at once, a reader polling `study show` every
0.2 s and the terminal UI open in tmux, for ten minutes; then count what went wrong.

    python bench/soak.py [--minutes 10] [--n-trials 12] [--budget-steps 12]

Rounds of three studies (`autotune study start --workers 2 --no-tui`, each its own runner process)
run back to back on one AUTOTUNE_HOME until the time is up; the last round is let finish. The
reader and the UI run the whole time. The verdict counts, over every process's output and every
screen the UI showed: tracebacks, "database is locked", studies that did not reach their count or
did not exit 0, failed reader calls, and processes of the home still alive at the end. It exits 0
only when each is zero. Prints the load average and the CPU beside the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import common
import optuna

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "autotune.cli"]
BAD = ("Traceback", "database is locked")


class Reader(threading.Thread):
    """`autotune study show NAME --json` every 0.2 s on whichever study runs now."""

    def __init__(self, env: dict[str, str], current: list[str]) -> None:
        super().__init__(daemon=True)
        self.env, self.current = env, current
        self.calls = self.failures = 0
        self.bad: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.current:
                result = subprocess.run([*CLI, "study", "show", self.current[0], "--json"], cwd=ROOT, env=self.env,
                                        capture_output=True, text=True, timeout=120)
                self.calls += 1
                # a study the runner has not created yet answers "no study": a clean exit 2
                if result.returncode not in (0, 2):
                    self.failures += 1
                self.bad += [line for line in result.stderr.splitlines() if any(b in line for b in BAD)]
            self.stop.wait(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--budget-steps", type=int, default=12)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("bench/soak.py needs tmux (apt-get install tmux)")

    home = Path(tempfile.mkdtemp(prefix="autotune-soak-"))
    env = {**os.environ, "AUTOTUNE_HOME": str(home)}
    session = f"autotune-soak-{os.getpid()}"
    load_before = os.getloadavg()
    started = time.monotonic()
    current: list[str] = []
    reader = Reader(env, current)
    reader.start()
    autotune = str(Path(sys.executable).with_name("autotune"))
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50",
                    f"env AUTOTUNE_HOME={home} {autotune} tui"], check=True)
    screens_bad: list[str] = []
    studies: list[tuple[str, int, str]] = []  # name, exit code, stderr
    rounds = 0
    try:
        while time.monotonic() - started < args.minutes * 60:
            rounds += 1
            names = [f"soak-{rounds}-{i}" for i in range(3)]
            current[:] = [names[0]]
            procs = [subprocess.Popen([*CLI, "study", "start", "--name", name, "--workers", "2", "--space", "quick",
                                       "--n-trials", str(args.n_trials), "--budget-steps", str(args.budget_steps),
                                       "--confirm", "0", "--seed", str(rounds), "--no-tui"],
                                      cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for name in names]
            for name, proc in zip(names, procs):
                while proc.poll() is None:
                    screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                            text=True).stdout
                    screens_bad += [line for line in screen.splitlines() if any(b in line for b in BAD)]
                    time.sleep(2)
                studies.append((name, proc.returncode, proc.stderr.read()))
            print(f"round {rounds}: {', '.join(f'{n} exit {c}' for n, c, _ in studies[-3:])} "
                  f"({time.monotonic() - started:.0f} s)", flush=True)
    finally:
        reader.stop.set()
        reader.join(30)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"])
        time.sleep(2)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    wall = time.monotonic() - started
    load_after = os.getloadavg()

    storage = f"sqlite:///{home / 'studies.db'}"
    from autotune.study.slots import counted_in

    short = []
    for name, code, _ in studies:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        running = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        if code != 0 or counted_in(trials) != args.n_trials or running:
            short.append(f"{name}: exit {code}, {counted_in(trials)}/{args.n_trials} counted, running {running}")
    tracebacks = sum(err.count("Traceback") for _, _, err in studies)
    locked = sum(err.count("database is locked") for _, _, err in studies)
    time.sleep(5)
    left = common.home_processes(home)
    for proc in left:
        proc.kill()

    print(f"\nsoak: {wall / 60:.1f} min, {rounds} rounds, {len(studies)} studies x {args.n_trials} trials "
          f"(--workers 2 each, budget {args.budget_steps} steps), {reader.calls} `study show` calls")
    print(f"CPU: {common.cpu_line()}; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    figures = {
        "tracebacks (studies)": tracebacks, "'database is locked' (studies)": locked,
        "studies short of their count or not exit 0": len(short), "reader calls failed": reader.failures,
        "reader lines with a traceback or lock": len(reader.bad), "UI screen lines with a traceback or lock":
        len(screens_bad), "processes left": len(left),
    }
    for label, value in figures.items():
        print(f"  {label}: {value}")
    for line in short + reader.bad[:5] + screens_bad[:5]:
        print(f"    {line}")
    shutil.rmtree(home, ignore_errors=True)
    raise SystemExit(0 if not any(figures.values()) else 1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
