"""The built-in workloads: real digits (bundled with scikit-learn), CIFAR-10 and MNIST from a local
folder, synthetic ResNet-18, and tinylm (a character-level transformer on Python's own help
text). A plugin like any other: it registers through `register_workloads` and uses only
autotune's public API.

Importing this module loads neither torch nor torchvision, so commands that only list what is
registered stay quick; each factory imports its torch side when it is called
(autotune.plugins.workloads.vision, or .language for tinylm).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from autotune import hookimpl
from autotune.home import autotune_home

if TYPE_CHECKING:
    from autotune import Workload

def digits() -> Workload:
    """scikit-learn's 1,797 handwritten digits (shipped in its wheel), upsampled for LeNet."""
    from autotune import Workload
    from autotune.plugins.workloads.vision import LeNet, digits_datasets

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
    from autotune.plugins.workloads.vision import LeNet, cifar10_datasets

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
    from autotune.plugins.workloads.vision import LeNet, mnist_datasets

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
    from autotune.plugins.workloads.vision import fake_datasets, resnet18

    train, val = fake_datasets(train_size, val_size)
    return Workload(
        name="synthetic-resnet18",
        model_fn=resnet18,
        train_data=train,
        val_data=val,
        description="FakeData 3x32x32 and ResNet-18 (random weights): throughput, not accuracy",
        input_shape=(3, 32, 32),
    )


# Karpathy's "Let's build GPT" character-level recipe (gpt.py in karpathy/ng-video-lecture):
# torch.optim.AdamW(lr=3e-4) with torch's defaults (weight decay 0.01, betas (0.9, 0.999)),
# batch 64, fp32. weight_decay is spelt out because the optimizer knob's own baseline is 0.0.
TINYLM_BASELINE: dict[str, Any] = {
    "batch_size": 64,
    "optimizer": "adamw",
    "learning_rate": 3e-4,
    "weight_decay": 0.01,
    "beta2": 0.999,
    "precision": "fp32",
    "workers": 0,
    "pruning": 0.0,
}


def tinylm() -> Workload:
    """A character-level GPT on the text of `pydoc_data.topics` (installed with every Python).

    The data: the help topics' text (~465,000 characters, ~100 distinct), its first 90% to train
    on and its last 10% to validate on, cut into non-overlapping windows of 65 characters (64
    inputs, each with the next character as its label). Batches are dicts `{"input_ids",
    "labels"}`; results count 64 tokens a sample (tokens_per_s). The model: 2 pre-LN blocks,
    width 64, 4 heads, causal `scaled_dot_product_attention`, the head tied to the token
    embedding (~110,000 parameters). Judged by val_loss (mean token cross-entropy, lower is
    better), with perplexity and next-character accuracy alongside.

    The baseline is the common tutorial recipe for character-level GPTs, that of Karpathy's
    "Let's build GPT" lecture on tiny Shakespeare (gpt.py in karpathy/ng-video-lecture):
    `torch.optim.AdamW(lr=3e-4)`, so torch's default weight decay 0.01 and betas (0.9, 0.999),
    batch 64, fp32, no DataLoader workers and no pruning. (nanoGPT's `train_shakespeare_char`
    config, the same model, trains hotter: lr 1e-3 with warm-up and cosine decay, beta2 0.99,
    weight decay 0.1; that is the kind of recipe a study should find.) The model is scaled down
    from the lecture's (6 layers, width 384, block 256, dropout 0.2) so that 200 steps at batch 64
    train in ~10 s on 2 idle CPU cores; dropout is left out, since runs this short do not overfit.
    """
    from autotune import Workload
    from autotune.plugins.workloads.language import BLOCK_SIZE, TinyLM, evaluate, tinylm_datasets, train_step

    vocab, train, val = tinylm_datasets(BLOCK_SIZE)
    return Workload(
        name="tinylm",
        model_fn=lambda: TinyLM(len(vocab), BLOCK_SIZE),
        train_data=train,
        val_data=val,
        train_step=train_step,
        evaluate=evaluate,
        metric="val_loss",
        direction="minimize",
        units_per_sample={"tokens": BLOCK_SIZE},
        baseline=dict(TINYLM_BASELINE),
        description=f"char-level GPT (2 layers, width 64, block {BLOCK_SIZE}) on pydoc_data.topics, val_loss",
    )


@hookimpl
def register_workloads(register: Callable[[str, Callable[..., Workload]], None]) -> None:
    register("digits", digits)
    register("cifar10", cifar10)
    register("mnist", mnist)
    register("synthetic-resnet18", synthetic_resnet18)
    register("tinylm", tinylm)
