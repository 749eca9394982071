"""Workloads: what is trained (model, data, loss, metric) and its untuned baseline recipe.

A workload is named by a registered name (`digits`) or an import path `package.module:function`
whose function returns a `Workload`. The built-ins register through the `register_workloads` hook
like any plugin's.
"""

from __future__ import annotations

import importlib
import inspect
import os
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from autotune.errors import UsageError
from autotune.hookspecs import hookimpl

if TYPE_CHECKING:
    from autotune.registry import Registry

# The common tutorial recipe (PyTorch's CIFAR-10 tutorial and most course notebooks).
TUTORIAL_BASELINE: dict[str, Any] = {
    "batch_size": 64,
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "momentum": 0.9,
    "precision": "fp32",
    "workers": 0,
    "pruning": 0.0,
}


def accuracy_count(outputs: torch.Tensor, targets: torch.Tensor) -> int:
    """Number of correct top-1 predictions in a batch."""
    return int((outputs.argmax(dim=1) == targets).sum().item())


@dataclass
class Workload:
    """A model and its data. `model_fn` builds a fresh model so every run starts equal."""

    name: str
    model_fn: Callable[[], nn.Module]
    train_data: Dataset
    val_data: Dataset
    loss_fn: Callable[..., torch.Tensor] = field(default_factory=nn.CrossEntropyLoss)
    metric_fn: Callable[[torch.Tensor, torch.Tensor], int] = accuracy_count
    metric: str = "accuracy"
    baseline: dict[str, Any] = field(default_factory=lambda: dict(TUTORIAL_BASELINE))
    description: str = ""
    input_shape: tuple[int, ...] | None = None
    # How load_workload built it ({"spec", "data_dir"}), so another process can build it again.
    # Not an init field: dataclasses.replace() drops it, since a changed copy is not what the
    # spec builds.
    origin: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)


class LeNet(nn.Module):
    """LeNet-5 for 32x32 inputs, with batch norm so plain SGD trains it in a few epochs."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TensorImages(Dataset):
    """Images held as one uint8-range tensor, with a per-sample CPU transform."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


class UpsampleDigit:
    """8x8 digit (0..16) -> normalised 1x32x32, optionally shifted by a random 32x32 crop.

    The upsampling and the random shift are per-sample CPU work, as augmentation is in real
    pipelines, so DataLoader workers have something to parallelise.
    """

    MEAN, STD = 0.30, 0.38

    def __init__(self, augment: bool) -> None:
        self.augment = augment

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        x = (image.float() / 16.0).view(1, 1, 8, 8)
        if self.augment:
            x = nn.functional.interpolate(x, size=36, mode="bilinear", align_corners=False)
            top, left = torch.randint(0, 5, (2,)).tolist()
            x = x[:, :, top : top + 32, left : left + 32]
        else:
            x = nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)
        return ((x - self.MEAN) / self.STD)[0]


def _split(n: int, val_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(n * val_fraction))
    return order[n_val:], order[:n_val]


def digits() -> Workload:
    """scikit-learn's 1,797 handwritten digits (shipped in its wheel), upsampled for LeNet."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.uint8)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    train_idx, val_idx = _split(len(labels), 0.2)
    return Workload(
        name="digits",
        model_fn=lambda: LeNet(in_channels=1),
        train_data=TensorImages(images[train_idx], labels[train_idx], UpsampleDigit(augment=True)),
        val_data=TensorImages(images[val_idx], labels[val_idx], UpsampleDigit(augment=False)),
        description="1,797 real 8x8 handwritten digits (scikit-learn), upsampled to 32x32, LeNet",
        input_shape=(1, 32, 32),
    )


def _data_root(data_dir: str | os.PathLike[str] | None) -> Path:
    root = data_dir or os.environ.get("AUTOTUNE_DATA_DIR")
    if root is None:
        from autotune.home import autotune_home

        return autotune_home() / "data"
    return Path(root)


def _torchvision_dataset(
    cls: Any, label: str, root: Path, download: bool, train: bool, transform: Any
) -> Dataset:
    try:
        return cls(root=str(root), train=train, download=download, transform=transform)
    except urllib.error.URLError as exc:
        raise UsageError(
            f"workload '{label}': download failed ({exc.reason}); without internet, put the "
            f"dataset under --data-dir {root} and drop --download"
        ) from None
    except RuntimeError as exc:
        message = str(exc)
        if message.startswith("Error downloading"):
            # MNIST tries every mirror and folds their URLErrors into one multi-line RuntimeError
            last = [line.strip() for line in message.splitlines() if line.strip()][-1]
            raise UsageError(
                f"workload '{label}': download failed ({last.strip('<>')}); without internet, put "
                f"the dataset under --data-dir {root} and drop --download"
            ) from None
        if "not found" not in message.lower() and "corrupted" not in message.lower():
            raise
        raise UsageError(
            f"workload '{label}': no dataset in {root}; pass --data-dir DIR holding it, "
            f"or add --download to fetch it (needs internet)"
        ) from None


def cifar10(data_dir: str | None = None, download: bool = False) -> Workload:
    """CIFAR-10 from torchvision with the standard crop+flip augmentation, LeNet."""
    from torchvision import datasets
    from torchvision.transforms import v2

    root = _data_root(data_dir)
    norm = v2.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    train_tf = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *to_tensor, norm])
    val_tf = v2.Compose([*to_tensor, norm])
    return Workload(
        name="cifar10",
        model_fn=lambda: LeNet(in_channels=3),
        train_data=_torchvision_dataset(datasets.CIFAR10, "cifar10", root, download, True, train_tf),
        val_data=_torchvision_dataset(datasets.CIFAR10, "cifar10", root, download, False, val_tf),
        description="CIFAR-10 (torchvision, from --data-dir), LeNet",
        input_shape=(3, 32, 32),
    )


def mnist(data_dir: str | None = None, download: bool = False) -> Workload:
    """MNIST from torchvision, padded to 32x32, LeNet."""
    from torchvision import datasets
    from torchvision.transforms import v2

    root = _data_root(data_dir)
    tf = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Pad(2), v2.Normalize((0.1307,), (0.3081,))]
    )
    return Workload(
        name="mnist",
        model_fn=lambda: LeNet(in_channels=1),
        train_data=_torchvision_dataset(datasets.MNIST, "mnist", root, download, True, tf),
        val_data=_torchvision_dataset(datasets.MNIST, "mnist", root, download, False, tf),
        description="MNIST (torchvision, from --data-dir), padded to 32x32, LeNet",
        input_shape=(1, 32, 32),
    )


def synthetic_resnet18(train_size: int = 2048, val_size: int = 256) -> Workload:
    """Random 3x32x32 images (torchvision FakeData) and ResNet-18: pure throughput work."""
    from torchvision import datasets, models
    from torchvision.transforms import v2

    tf = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    return Workload(
        name="synthetic-resnet18",
        model_fn=lambda: models.resnet18(weights=None, num_classes=10),
        train_data=datasets.FakeData(train_size, (3, 32, 32), 10, transform=tf, random_offset=0),
        val_data=datasets.FakeData(val_size, (3, 32, 32), 10, transform=tf, random_offset=train_size),
        description="FakeData 3x32x32 and ResNet-18 (random weights): throughput, not accuracy",
        input_shape=(3, 32, 32),
    )


@hookimpl
def register_workloads(register: Callable[[str, Callable[..., Workload]], None]) -> None:
    register("digits", digits)
    register("cifar10", cifar10)
    register("mnist", mnist)
    register("synthetic-resnet18", synthetic_resnet18)


from autotune.spec import DEFAULT_WORKLOAD  # noqa: E402,F401  (re-exported; the torch-free spec owns it)


def resolve_factory(spec: str, registry: "Registry") -> Callable[..., Workload]:
    """Find a workload factory by registered name or `package.module:function` import path."""
    if ":" not in spec:
        try:
            return registry.workloads[spec]
        except KeyError:
            raise UsageError(
                f"unknown workload '{spec}' (known: {', '.join(registry.workloads)}; "
                f"or give an import path package.module:function)"
            ) from None
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"workload '{spec}': cannot import module '{module_name}': {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"workload '{spec}': module '{module_name}' has no function '{attr}'")
    return factory


def load_workload(
    spec: str,
    registry: "Registry",
    data_dir: str | None = None,
    download: bool = False,
) -> Workload:
    """Build the workload `spec` names, passing only the options its factory accepts."""
    factory = resolve_factory(spec, registry)
    options = {"data_dir": data_dir, "download": download}
    try:
        accepted = inspect.signature(factory).parameters
        kwargs = {k: v for k, v in options.items() if k in accepted}
    except (TypeError, ValueError):
        kwargs = {}
    try:
        workload = factory(**kwargs)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"workload '{spec}': factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(workload, Workload):
        raise UsageError(f"workload '{spec}': factory returned {type(workload).__name__}, not a Workload")
    workload.origin = {"spec": spec, "data_dir": data_dir}
    return workload
