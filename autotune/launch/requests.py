"""What a trial process is asked to do, one type per kind of trial: plain data that crosses the
process boundary (no live objects), from which the child rebuilds its run by name.

`TrialRequest` holds what every trial process needs; `TrainingRequest` trains a workload,
`ScriptRequest` runs the user's own script under a session, `InferenceRequest` serves a trained
model. The child picks what to run by the request's type (autotune.launch.trials.run_trial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from autotune.inference.types import InferenceOptions
from autotune.run.types import RunOptions


@dataclass(kw_only=True)
class TrialRequest:
    """What every trial process needs, whatever it runs.

    `overrides` are the settings asked for, resolved in the child against the hardware it sees
    (its leased GPUs: autotune.settings.resolve_settings).
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    threads: int | None = None  # torch's intra-op threads in the child; None: torch's default
    env: dict[str, str] = field(default_factory=dict)  # set in the child first (CUDA_VISIBLE_DEVICES)
    log_path: str | None = None
    workdir: str | None = None  # the trial runs there (default: wherever the forkserver started)
    stall_timeout: float | None = None  # the watchdog's floor in seconds (see Watchdog); None: off
    plugin_paths: tuple[str, ...] = ()
    disabled_knobs: tuple[str, ...] = ()


@dataclass(kw_only=True)
class TrainingRequest(TrialRequest):
    """Train a workload, by name, for a budget (autotune.run.engine)."""

    workload: str
    budget: dict[str, Any]
    options: RunOptions = field(default_factory=RunOptions)
    data_dir: str | None = None


@dataclass(kw_only=True)
class ScriptRequest(TrialRequest):
    """Run the user's training script instead of a workload (autotune.launch.script)."""

    script: str
    budget: dict[str, Any]
    script_args: tuple[str, ...] = ()
    options: RunOptions = field(default_factory=RunOptions)


@dataclass(kw_only=True)
class InferenceRequest(TrialRequest):
    """Serve a trained model and measure it (autotune.inference.serve), or time two servings
    against each other (`inference.reference`: autotune.inference.compare)."""

    workload: str
    inference: InferenceOptions
    data_dir: str | None = None
