"""A plain PyTorch training script, tuned by autotune through the session API.

    python examples/own-script/train.py                       # trains once, baseline settings
    autotune study start --script examples/own-script/train.py --n-trials 6 --no-tui

It classifies scikit-learn's bundled handwritten digits (no download) with a small MLP. The
four lines marked `autotune` are all it takes: the study's knobs (batch size, optimizer,
learning rate, precision, DataLoader workers ...) reach the script through `session.prepare`,
each trial's budget ends the loop, and `session.report` gives the study the validation metrics
(judged by val_loss unless `--metric` names another) for pruning and the time to the target.
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autotune
import autotune.sessions


def datasets() -> tuple[TensorDataset, TensorDataset]:
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return TensorDataset(x[:1500], y[:1500]), TensorDataset(x[1500:], y[1500:])


def evaluate(model: nn.Module, loader: DataLoader, tuned: autotune.sessions.SessionTuned) -> dict[str, float]:
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    with torch.no_grad(), tuned.autocast():
        for inputs, targets in loader:
            inputs, targets = tuned.to_device(inputs, targets)
            outputs = model(inputs).float()
            loss_sum += float(nn.functional.cross_entropy(outputs, targets, reduction="sum"))
            correct += int((outputs.argmax(1) == targets).sum())
            count += len(targets)
    model.train()
    return {"val_loss": loss_sum / count, "accuracy": correct / count}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20, help="when run by hand; a trial's budget wins")
    args = parser.parse_args()

    torch.manual_seed(0)
    train_set, val_set = datasets()
    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    loss_fn = nn.CrossEntropyLoss()

    session = autotune.session()  # autotune: this trial's settings (by hand: the baseline)
    tuned = session.prepare(model, loss_fn)  # autotune: device, optimizer, precision ... from the knobs
    train_loader = tuned.dataloader(train_set, shuffle=True)  # autotune: measured, ends with the budget
    val_loader = tuned.dataloader(val_set, train=False, batch_size=512)

    for epoch in range(args.epochs if not session.in_trial else 10**9):
        for inputs, targets in train_loader:
            inputs, targets = tuned.to_device(inputs, targets)
            with tuned.autocast():
                loss = loss_fn(tuned.model(inputs), targets)
            tuned.step(loss)
        metrics = evaluate(tuned.model, val_loader, tuned)
        if not session.in_trial:
            print(f"epoch {epoch + 1}: val_loss {metrics['val_loss']:.4f} accuracy {metrics['accuracy']:.4f}")
        if session.report(metrics):  # autotune: True once pruned, at the target or out of budget
            break
    tuned.close()


if __name__ == "__main__":
    main()
