"""A Lightning training script, tuned by autotune through the Lightning adapter.

    python examples/lightning/train.py                       # trains once, baseline settings
    autotune study start --name lit --script examples/lightning/train.py --n-trials 6 --no-tui

A small MLP on scikit-learn's bundled handwritten digits (no download). The lines marked
`autotune` are all it takes: the trial's batch size and DataLoader workers reach the loaders,
its precision, gradient accumulation, device and budget the Trainer, its optimizer, learning
rate and schedule the module's `configure_optimizers`, and the adapter's callback reports each
validation (`val_loss`, `accuracy`) to the study and stops the Trainer when the study says so.
Needs `pip install 'autotune[lightning]'`.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autotune.adapters.lightning import adapt


class DigitsMLP(L.LightningModule):
    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        return nn.functional.cross_entropy(self(inputs), targets)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, targets = batch
        outputs = self(inputs).float()
        self.log("val_loss", nn.functional.cross_entropy(outputs, targets), prog_bar=True)
        self.log("accuracy", (outputs.argmax(1) == targets).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:  # by hand without autotune; a trial's replaces it
        return torch.optim.SGD(self.parameters(), lr=0.01)


def datasets() -> tuple[TensorDataset, TensorDataset]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=10, help="when run by hand; a trial's budget wins")
    parser.add_argument("--val-every", type=int, default=12, help="validate every N training batches")
    args = parser.parse_args()

    torch.manual_seed(0)
    train_set, val_set = datasets()
    trial = adapt(DigitsMLP(args.hidden))  # autotune: this trial's settings (by hand: the baseline)
    train_loader = DataLoader(train_set, shuffle=True, **trial.loader_kwargs())  # autotune: batch, workers
    val_loader = DataLoader(val_set, batch_size=512, **trial.loader_kwargs(train=False))
    trainer = L.Trainer(**trial.trainer_kwargs(  # autotune: precision, accumulation, budget, callback
        max_epochs=args.epochs, val_check_interval=args.val_every, check_val_every_n_epoch=None,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    ))
    trainer.fit(trial.model, train_loader, val_loader)
    if not trial.session.in_trial:  # by hand: the final figures (`trial run --json` prints its own)
        print(f"val_loss {float(trainer.callback_metrics['val_loss']):.4f} "
              f"accuracy {float(trainer.callback_metrics['accuracy']):.4f}")


if __name__ == "__main__":
    main()
