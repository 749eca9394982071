"""Shared fixtures: a home of its own for every test, the built-in registry, this machine's CPU
fingerprint, the digits workload; a home driven through the CLI (`cli_home`); and, built once a
session, a finished study of a lower-is-better metric and the models the serving tests serve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from autotune.budget import Budget
from autotune.hardware import Hardware, detect
from autotune.registry import Registry, load_registry
from autotune.plugins.workloads.catalog import digits
from autotune.workloads import Workload

from home_processes import CliHome, kill_all
from serving_models import train_models

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_FILES = Path(__file__).parent / "plugin_files"

# Tests press Ctrl-C on child processes (SIGINT). A test run started in the background of a
# non-interactive shell (`cmd &`, nohup) ignores SIGINT, and children inherit an ignored signal:
# they would never see it. A handler here makes every child start with the default again.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def autotune_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own AUTOTUNE_HOME (studies, daemon files, logs): nothing one test
    writes is seen by another, nor by the user's ~/.autotune. A test may point it elsewhere."""
    home = tmp_path / "autotune-home"
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    return home


@pytest.fixture
def registry() -> Registry:
    """Built-in plugins only: installed entry-point plugins must not change test outcomes."""
    return load_registry(entry_points=False)


@pytest.fixture(scope="session")
def hardware() -> Hardware:
    """The CPU fingerprint, so tests behave the same on machines with a GPU."""
    return detect("cpu")


@pytest.fixture(scope="session")
def digits_workload() -> Workload:
    """The real digits workload, built once (models are built fresh by each run)."""
    return digits()


@pytest.fixture
def tiny_budget() -> Callable[..., Budget]:
    """`tiny_budget(steps=2)`: a run long enough to train and validate, short enough for tests."""

    def make(steps: int = 2) -> Budget:
        return Budget(steps=steps)

    return make


@pytest.fixture
def cli_home(tmp_path: Path) -> Iterator[CliHome]:
    """An AUTOTUNE_HOME driven through the real CLI (tests/home_processes.py); whatever process
    still carries it when the test ends is killed, so a failing test leaves nothing training on the
    shared cores."""
    home = CliHome(tmp_path / "home")
    yield home
    kill_all(home.leftovers())


@pytest.fixture(scope="session")
def regression_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A real study of tests.workloads_for_tests:regression (val_mse: lower is better), 3 trials and a
    confirmation, run by `study start` in a fresh process: its home folder and the finished process.
    Read by the study runner's tests and the terminal UI's."""
    tmp = tmp_path_factory.mktemp("regression")
    env = {**os.environ, "AUTOTUNE_HOME": str(tmp / "home"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "study", "start", "--name", "reg",
         "--workload", "tests.workloads_for_tests:regression", "--n-trials", "3", "--no-tui", "--space", "quick",
         "--budget-steps", "40", "--confirm", "1", "--seed", "1"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
    )
    return tmp / "home", proc


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The models the serving tests serve, built once a session (tests/serving_models.py)."""
    return train_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def serving() -> tuple[Registry, Hardware]:
    """The inference knobs' registry (built-ins only) and this machine's CPU fingerprint."""
    return load_registry(entry_points=False, task="inference"), detect("cpu")
