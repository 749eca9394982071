"""Import-path workloads for the tests (`tests.workloads_for_tests:slow_data` and friends).

Everything here is defined at module level so datasets pickle (DataLoader workers under spawn or
forkserver) and so `autotune trial run --workload tests.workloads_for_tests:NAME` can import it in
a subprocess (with the repository root on PYTHONPATH).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from autotune.plugins.workloads.catalog import digits
from autotune.workloads import Workload

FORWARD_FAILURE = "deliberate failure in forward from tests.workloads_for_tests"


class SlowDataset(Dataset):
    """Wraps a dataset and sleeps `delay` seconds per sample: a per-sample loading cost that
    occupies no CPU, so DataLoader workers can hide it."""

    def __init__(self, inner: Dataset, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        time.sleep(self.delay)
        return self.inner[index]


def slow_data(delay: float = 0.001) -> Workload:
    """digits with `delay` seconds of extra loading cost per training sample."""
    workload = digits()
    workload.name = "slow-digits"
    workload.train_data = SlowDataset(workload.train_data, delay)
    return workload


def slower_data() -> Workload:
    """digits with 4 ms of loading per sample: every trial trains for seconds, even one pruned
    early, so several runners all get trials and a test can catch one mid-training."""
    return slow_data(0.004)


class FailingForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(FORWARD_FAILURE)


class OutOfMemoryForward(nn.Module):
    """Raises what the CUDA allocator raises, so "oom" handling is testable on a CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (from a test)")


def _tiny_data(n: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 4, generator=generator)
    return TensorDataset(inputs, (inputs.sum(dim=1) > 0).long())


def failing_forward() -> Workload:
    """A model that raises inside forward on the first step."""
    return Workload(name="failing-forward", model_fn=FailingForward,
                    train_data=_tiny_data(64, 0), val_data=_tiny_data(16, 1))


def oom_forward() -> Workload:
    """A model that raises torch.OutOfMemoryError on the first step."""
    return Workload(name="oom-forward", model_fn=OutOfMemoryForward,
                    train_data=_tiny_data(64, 0), val_data=_tiny_data(16, 1))


class TinyLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny() -> Workload:
    """A seconds-cheap workload: is the sum of 4 normal numbers positive?"""
    return Workload(name="tiny", model_fn=TinyLinear, train_data=_tiny_data(256, 0),
                    val_data=_tiny_data(64, 1), input_shape=(4,))


def empty_data() -> Workload:
    """A workload whose training set has no sample."""
    return Workload(name="empty", model_fn=TinyLinear, train_data=_tiny_data(0, 0), val_data=_tiny_data(16, 1))


def not_a_workload() -> int:
    """A factory that returns the wrong thing."""
    return 42


def broken_factory() -> Workload:
    """A factory that raises while building its data."""
    raise FileNotFoundError("labels.csv is missing (from tests.workloads_for_tests)")


class _DictRegression(Dataset):
    """y = x @ w + noise, served as dicts: {"features": x, "target": y}."""

    def __init__(self, n: int, seed: int, noise: float = 0.05) -> None:
        g = torch.Generator().manual_seed(seed)
        weights = torch.linspace(-1.0, 1.0, 8, dtype=torch.float32)
        self.x = torch.randn(n, 8, generator=g)
        self.y = self.x @ weights + noise * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"features": self.x[index], "target": self.y[index]}


def _regression_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch["features"]).squeeze(-1).float(), batch["target"])


def _regression_metrics(model: nn.Module, batches: Any) -> dict[str, float]:
    squared = absolute = count = 0.0
    for batch in batches:
        error = model(batch["features"]).squeeze(-1).float() - batch["target"]
        squared += float((error**2).sum())
        absolute += float(error.abs().sum())
        count += len(error)
    return {"val_mse": squared / count, "val_mae": absolute / count}


def regression() -> Workload:
    """A regression MLP whose batches are dicts and whose metric (val_mse) is lower-is-better."""
    return Workload(
        name="regression",
        model_fn=lambda: nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1)),
        train_data=_DictRegression(512, 0),
        val_data=_DictRegression(128, 1),
        train_step=_regression_step,
        evaluate=_regression_metrics,
        metric="val_mse",
        baseline={"batch_size": 32, "optimizer": "adam", "learning_rate": 0.01, "precision": "fp32", "workers": 0},
    )


def stalling() -> Workload:
    """Noisy linear regression trained by plain SGD at a constant learning rate: a hot learning
    rate gets near the answer in a few steps and then stalls on its noise floor (SGD's excess
    loss grows with the step size), while the baseline's slow one keeps improving below it. A
    recipe that wins a short study and loses the long run (short-horizon bias)."""
    return Workload(
        name="stalling",
        model_fn=lambda: nn.Linear(8, 1),
        train_data=_DictRegression(2048, 0, noise=0.5),
        val_data=_DictRegression(1024, 1, noise=0.5),
        train_step=_regression_step,
        evaluate=_regression_metrics,
        metric="val_mse",
        baseline={"batch_size": 8, "optimizer": "sgd", "momentum": 0.0, "learning_rate": 0.01, "precision": "fp32",
                  "workers": 0},
    )
