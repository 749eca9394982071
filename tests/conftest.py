"""Shared fixtures: a home of its own for every test, the built-in registry, this machine's CPU
fingerprint, the digits workload."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable

import pytest

from autotune.budget import Budget
from autotune.hardware import Hardware, detect
from autotune.registry import Registry, load_registry
from autotune.plugins.workloads.catalog import digits
from autotune.workloads import Workload

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
