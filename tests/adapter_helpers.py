"""Shared by tests/test_adapters_*.py: a trial's session built in this process, an example
script loaded as a module, and a real `study start --script` run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from autotune.budget import Budget
from autotune.hardware import detect
from autotune.registry import load_registry
from autotune.run.types import RunOptions
from autotune import sessions
from autotune.sessions import Session
from autotune.settings import resolve_settings
from autotune.workloads import script_workload

ROOT = Path(__file__).resolve().parents[1]


def trial_session(steps: int, target: float | None = None, **settings: Any) -> Session:
    """A session as a --script trial gets it: the baseline with `settings` changed, `steps` of
    budget, stopping at val_loss <= `target` when given."""
    registry, hardware = load_registry(), detect("cpu")
    # micro_batches is left out of a script's settings (it needs autotune's loop); the adapters
    # give it to the framework's own accumulation, so a session may carry it
    parts = {k: settings.pop(k) for k in ("micro_batches",) if k in settings}
    chosen = {**resolve_settings(registry, hardware, script_workload("test"), settings), **parts}
    options = RunOptions(metric="val_loss", direction="minimize", target=target, stop_at_target=target is not None)
    return Session(chosen, budget=Budget(steps=steps), options=options,
                   registry=registry, hardware=hardware, device="cpu", in_trial=True)


def example(name: str) -> ModuleType:
    """examples/NAME/train.py as a module (its main() not run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name / "train.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def study(tmp: Path, name: str, script: Path, *args: str, timeout: float = 300) -> dict[str, Any]:
    """`autotune study start --script` for real; its --json report."""
    env = {**os.environ, "AUTOTUNE_HOME": str(tmp / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "study", "start", "--name", name, "--script", str(script),
         "--no-tui", "--json", "--confirm", "0", "--no-explain", "--seed", "1", *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def by_hand(name: str, *args: str) -> None:
    """examples/NAME/train.py's main() as `python train.py ARGS` runs it, outside any study (in
    this process: the frameworks are imported already), with the session it makes by hand."""
    argv = sys.argv
    sys.argv = [str(ROOT / "examples" / name / "train.py"), *args]
    try:
        example(name).main()
    finally:
        sys.argv = argv
        sessions.activate(None)
