"""The shared check of every built-in knob: one run with every knob at its own baseline, and a
`Case` per knob whose settings change only that knob's from there (the `baseline` and `case_for`
fixtures of tests/knobs/conftest.py). The real digits workload, two steps, on CPU. A probe wraps the
workload so the run reports what happened inside it: the thread count when the model is built, the
memory format and sparsity of the weights at the first forward pass, the dtype of the model's
outputs, and which processes loaded training samples.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.knob import Knob, exclusion
from autotune.plugins.workloads.vision import LeNet
from autotune.registry import DEFAULT_PLUGINS, Registry, load_registry
from autotune.run import engine
from autotune.run.local import build_plan
from autotune.run.measure import nonzero_fraction
from autotune.run.plan import TrainingPlan
from autotune.run.types import RunResult
from autotune.settings import resolve_settings, settings_index
from autotune.workloads import Workload

STEPS = 2
CPU = torch.device("cpu")


def _builtin_knob_names() -> list[str]:
    registry = load_registry(entry_points=False)
    return [name for name, plugin in registry.knob_plugins.items() if plugin in DEFAULT_PLUGINS]


BUILTIN_KNOBS = _builtin_knob_names()


class _PidRecording(Dataset):
    """A dataset that leaves a file named after each process that loads a sample from it."""

    def __init__(self, data: Dataset, directory: Path) -> None:
        self.data = data
        self.directory = directory
        self._recorded_in: int | None = None

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        if self._recorded_in != os.getpid():
            (self.directory / str(os.getpid())).touch()
            self._recorded_in = os.getpid()
        return self.data[index]


class Probe:
    """The digits workload, instrumented; `run()` trains it and keeps what it saw."""

    def __init__(self, workload: Workload, directory: Path) -> None:
        self.base = workload
        self.pid_dir = directory
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.threads_at_build: int | None = None
        self.first_forward: dict[str, Any] | None = None
        self.output_dtypes: set[torch.dtype] = set()
        self.result: RunResult | None = None
        self.workload = dataclasses.replace(
            workload, model_fn=self._model, train_data=_PidRecording(workload.train_data, directory)
        )

    def _model(self) -> nn.Module:
        self.threads_at_build = torch.get_num_threads()
        model = self.base.model_fn()
        model.register_forward_pre_hook(self._before_forward)
        model.register_forward_hook(lambda module, args, output: self.output_dtypes.add(output.dtype))
        return model

    def _before_forward(self, model: nn.Module, args: Any) -> None:
        if self.first_forward is not None or not model.training:
            return
        # the second conv: with one input channel the first is contiguous in both formats
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
        self.first_forward = {
            "threads": torch.get_num_threads(),
            "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last),
            "nonzero": nonzero_fraction(model),
            "input_shape": tuple(args[0].shape),
        }

    @property
    def loader_pids(self) -> set[int]:
        return {int(p.name) for p in self.pid_dir.iterdir()}

    def run(self, registry: Registry, hardware: Hardware, settings: dict[str, Any]) -> "Probe":
        self.result = engine.run(self.workload, settings, registry, hardware, Budget(steps=STEPS), device="cpu")
        assert self.result.status == "ok", self.result.error
        return self


def knob_baselines(registry: Registry, hardware: Hardware, **overrides: Any) -> dict[str, Any]:
    """Every available knob at its own baseline (not the workload's recipe), then `overrides`.

    Baseline sub-settings that do not apply under the result (momentum under adam) are dropped.
    """
    settings: dict[str, Any] = {}
    for knob in registry.knobs.values():
        if exclusion(knob, hardware) is None:
            settings.update(knob.baseline(hardware))
    settings.update(overrides)
    index = settings_index(registry, hardware)
    return {k: v for k, v in settings.items() if k in overrides or index[k][1].active(settings)}


@dataclasses.dataclass
class Case:
    """One knob under test, with helpers that change only its settings from the baselines."""

    knob: Knob
    registry: Registry
    hardware: Hardware
    workload: Workload
    baseline: Probe
    tmp_path: Path
    plans: list[TrainingPlan]

    @property
    def base_value(self) -> Any:
        return self.knob.baseline(self.hardware)[self.knob.name]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        wanted = knob_baselines(self.registry, self.hardware, **overrides)
        return resolve_settings(self.registry, self.hardware, self.workload, wanted)

    def plan(self, **overrides: Any) -> TrainingPlan:
        """build_plan under these settings; its cleanups run when the test ends."""
        plan = build_plan(self.registry, self.hardware, self.workload, self.settings(**overrides), CPU)
        self.plans.append(plan)
        return plan

    def run(self, **overrides: Any) -> Probe:
        probe = Probe(self.workload, Path(tempfile.mkdtemp(dir=self.tmp_path)))
        return probe.run(self.registry, self.hardware, self.settings(**overrides))


def transformed(plan: TrainingPlan) -> nn.Module:
    """A fresh LeNet put through the plan's model transforms in order, as the engine does."""
    model = LeNet(in_channels=1)
    for _, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
        result = fn(model)
        model = model if result is None else result
    return model


def second_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
