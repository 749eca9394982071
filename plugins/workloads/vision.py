"""The torch side of the built-in image workloads (digits, CIFAR-10, MNIST, synthetic ResNet-18):
models, datasets, transforms and dataset loading.

autotune.plugins.workloads.catalog registers the workloads without importing this module; each of
their factories imports it when called, so torch and torchvision load only when a workload is built.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import Dataset

from autotune import UsageError


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


def resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 with random weights."""
    from torchvision import models

    return models.resnet18(weights=None, num_classes=num_classes)


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


def digits_datasets() -> tuple[Dataset, Dataset]:
    """(train, val): scikit-learn's digits split 80/20 with a fixed seed, train augmented."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.uint8)
    labels = torch.tensor(bunch.target, dtype=torch.long)
    train_idx, val_idx = _split(len(labels), 0.2)
    return (
        TensorImages(images[train_idx], labels[train_idx], UpsampleDigit(augment=True)),
        TensorImages(images[val_idx], labels[val_idx], UpsampleDigit(augment=False)),
    )


def _torchvision_dataset(
    cls: Any, label: str, root: Path, download: bool, train: bool, transform: Any
) -> Dataset:
    """`cls(root, train, ...)`, with a missing dataset or a failed download as a UsageError."""
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


def cifar10_datasets(root: Path, download: bool) -> tuple[Dataset, Dataset]:
    """(train, val) CIFAR-10 under `root`, train with the standard crop+flip augmentation."""
    from torchvision import datasets
    from torchvision.transforms import v2

    norm = v2.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    train_tf = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *to_tensor, norm])
    val_tf = v2.Compose([*to_tensor, norm])
    return (
        _torchvision_dataset(datasets.CIFAR10, "cifar10", root, download, True, train_tf),
        _torchvision_dataset(datasets.CIFAR10, "cifar10", root, download, False, val_tf),
    )


def mnist_datasets(root: Path, download: bool) -> tuple[Dataset, Dataset]:
    """(train, val) MNIST under `root`, padded to 32x32 and normalised."""
    from torchvision import datasets
    from torchvision.transforms import v2

    tf = v2.Compose(
        [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Pad(2), v2.Normalize((0.1307,), (0.3081,))]
    )
    return (
        _torchvision_dataset(datasets.MNIST, "mnist", root, download, True, tf),
        _torchvision_dataset(datasets.MNIST, "mnist", root, download, False, tf),
    )


def fake_datasets(train_size: int, val_size: int) -> tuple[Dataset, Dataset]:
    """(train, val) random 3x32x32 images in 10 classes; the two never share a sample."""
    from torchvision import datasets
    from torchvision.transforms import v2

    tf = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    return (
        datasets.FakeData(train_size, (3, 32, 32), 10, transform=tf, random_offset=0),
        datasets.FakeData(val_size, (3, 32, 32), 10, transform=tf, random_offset=train_size),
    )
