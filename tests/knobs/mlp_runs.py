"""Short real CPU runs (`engine.run`, in-process) of a small MLP, and tinylm's models recorded, for
the memory knobs (micro_batches, activation_checkpointing). A run's final weights are read from the
model its workload built (`Recorder`), so a test can compare two runs' weights; runs are seeded, so
equal settings give equal weights on CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.registry import Registry
from autotune.run import engine
from autotune.run.types import RunResult
from autotune.settings import resolve_settings
from autotune.workloads import Workload

FEATURES, CLASSES, WIDTH = 8, 3, 64
RECIPE = {"batch_size": 32, "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "precision": "fp32"}


class Recorder:
    """A model factory that keeps the models it built: the last one holds a run's final weights."""

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        self.build = build
        self.models: list[nn.Module] = []

    def __call__(self) -> nn.Module:
        self.models.append(self.build())
        return self.models[-1]

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.models[-1].state_dict().items()}


def mlp() -> nn.Sequential:
    """Four hidden layers, no BatchNorm, no dropout: an nn.Sequential of 9 layers."""
    layers: list[nn.Module] = [nn.Linear(FEATURES, WIDTH), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, CLASSES))


def _data(n: int, seed: int) -> TensorDataset:
    inputs = torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))
    mix = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99))
    return TensorDataset(inputs, (inputs @ mix).argmax(dim=1))


def workload(build: Callable[[], nn.Module]) -> Workload:
    """200 samples: six batches of 32 and a short one of 8 an epoch."""
    return Workload(name="memory-mlp", model_fn=build, train_data=_data(200, 0), val_data=_data(64, 1),
                    input_shape=(FEATURES,), baseline=dict(RECIPE))


def run(registry: Registry, hardware: Hardware, work: Workload, steps: int = 8, **settings: Any) -> RunResult:
    resolved = resolve_settings(registry, hardware, work, settings)
    result = engine.run(work, resolved, registry, hardware, Budget(steps=steps), device="cpu")
    return result


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=atol), f"{name}: {(a[name] - b[name]).abs().max()}"


def tiny_lm(base: Workload, **changes: Any) -> Workload:
    """tinylm with its models recorded, and a short validation set (what is compared is the same)."""
    val = torch.utils.data.Subset(base.val_data, range(64))
    return dataclasses.replace(base, model_fn=Recorder(base.model_fn), val_data=val, **changes)
