"""The built-in workloads: real digits (bundled with scikit-learn), CIFAR-10 and MNIST from a local
folder, and synthetic ResNet-18. A plugin like any other: it registers through
`register_workloads` and uses only autotune's public API.

Importing this module loads neither torch nor torchvision, so commands that only list what is
registered stay quick; each factory imports autotune.plugins.workload_data when it is called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from autotune import hookimpl
from autotune.home import autotune_home

if TYPE_CHECKING:
    from autotune import Workload

def digits() -> Workload:
    """scikit-learn's 1,797 handwritten digits (shipped in its wheel), upsampled for LeNet."""
    from autotune import Workload
    from autotune.plugins.workload_data import LeNet, digits_datasets

    train, val = digits_datasets()
    return Workload(
        name="digits",
        model_fn=lambda: LeNet(in_channels=1),
        train_data=train,
        val_data=val,
        description="1,797 real 8x8 handwritten digits (scikit-learn), upsampled to 32x32, LeNet",
        input_shape=(1, 32, 32),
    )


def _data_root(data_dir: str | os.PathLike[str] | None) -> Path:
    root = data_dir or os.environ.get("AUTOTUNE_DATA_DIR")
    if root is None:
        return autotune_home() / "data"
    return Path(root)


def cifar10(data_dir: str | None = None, download: bool = False) -> Workload:
    """CIFAR-10 from torchvision with the standard crop+flip augmentation, LeNet."""
    from autotune import Workload
    from autotune.plugins.workload_data import LeNet, cifar10_datasets

    train, val = cifar10_datasets(_data_root(data_dir), download)
    return Workload(
        name="cifar10",
        model_fn=lambda: LeNet(in_channels=3),
        train_data=train,
        val_data=val,
        description="CIFAR-10 (torchvision, from --data-dir), LeNet",
        input_shape=(3, 32, 32),
    )


def mnist(data_dir: str | None = None, download: bool = False) -> Workload:
    """MNIST from torchvision, padded to 32x32, LeNet."""
    from autotune import Workload
    from autotune.plugins.workload_data import LeNet, mnist_datasets

    train, val = mnist_datasets(_data_root(data_dir), download)
    return Workload(
        name="mnist",
        model_fn=lambda: LeNet(in_channels=1),
        train_data=train,
        val_data=val,
        description="MNIST (torchvision, from --data-dir), padded to 32x32, LeNet",
        input_shape=(1, 32, 32),
    )


def synthetic_resnet18(train_size: int = 2048, val_size: int = 256) -> Workload:
    """Random 3x32x32 images (torchvision FakeData) and ResNet-18: pure throughput work."""
    from autotune import Workload
    from autotune.plugins.workload_data import fake_datasets, resnet18

    train, val = fake_datasets(train_size, val_size)
    return Workload(
        name="synthetic-resnet18",
        model_fn=resnet18,
        train_data=train,
        val_data=val,
        description="FakeData 3x32x32 and ResNet-18 (random weights): throughput, not accuracy",
        input_shape=(3, 32, 32),
    )


@hookimpl
def register_workloads(register: Callable[[str, Callable[..., Workload]], None]) -> None:
    register("digits", digits)
    register("cifar10", cifar10)
    register("mnist", mnist)
    register("synthetic-resnet18", synthetic_resnet18)
