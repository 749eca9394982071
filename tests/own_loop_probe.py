"""A training script with its own loop that records what the knobs did to it: run as a --script
trial (`autotune trial run --script tests/own_loop_probe.py`, the session API) it writes its record
to $PROBE_OUT; `train` is the same loop for autotune.apply (tests/own_loop_matrix.py).

The record, per optimizer step or for the run: the learning rate each step ran at, the samples of
each forward of the model, the dtype of its output, the thread count and the fp32 matmul
precision while training, the forwards of its first convolution per step (recomputed ones
included), the memory format of its second convolution's weight and of the inputs, the fraction
of its weights that are not zero, its type and the optimizer's, and its loader's settings.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

CLASSES = 4


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, CLASSES),
    )


def dataset() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(96, 3, 8, 8, generator=generator), torch.randint(0, CLASSES, (96,), generator=generator))


def _nonzero(net: nn.Module) -> float:
    weights = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)


class Recorder:
    """Hooks on the tuned model; `step_done` closes one optimizer step's record."""

    def __init__(self, tuned: Any, loader: Any) -> None:
        self.tuned = tuned
        compiled = type(tuned.model).__name__ == "OptimizedModule"
        # a compiled model's first forward compiles for seconds: the record is that it is compiled
        self.net = tuned.model._orig_mod if compiled else tuned.model
        convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        self.record: dict[str, Any] = {
            "lrs": [], "rows": [], "dtypes": [], "threads": [], "matmul": [], "conv_forwards": [],
            "compiled": compiled, "model": type(tuned.model).__name__,
            "optimizer": type(tuned.optimizer).__name__, "optimizer_defaults": {
                k: v for k, v in tuned.optimizer.defaults.items() if isinstance(v, (int, float, str, bool, type(None)))},
            "loader": {"batch_size": loader.batch_size, "num_workers": loader.num_workers,
                       "pin_memory": loader.pin_memory},
            "channels_last_weight": convs[1].weight.is_contiguous(memory_format=torch.channels_last),
            "nonzero_start": _nonzero(self.net), "channels_last_inputs": [],
        }
        self.forwards = 0
        self.net.register_forward_pre_hook(lambda m, args: self.record["rows"].append(int(args[0].shape[0])))
        self.net.register_forward_hook(lambda m, args, out: self.record["dtypes"].append(str(out.dtype)))
        convs[0].register_forward_hook(self._conv_forward)

    def _conv_forward(self, module: nn.Module, args: Any, out: Any) -> None:
        self.forwards += 1

    def loss(self, batch: Any) -> torch.Tensor:
        inputs, targets = batch
        self.record["channels_last_inputs"].append(inputs.is_contiguous(memory_format=torch.channels_last))
        self.record["lrs"].append(self.tuned.optimizer.param_groups[0]["lr"])
        self.record["threads"].append(torch.get_num_threads())
        self.record["matmul"].append(torch.get_float32_matmul_precision())
        self.forwards = 0
        with self.tuned.autocast():
            outputs = self.net(inputs)
        return nn.functional.cross_entropy(outputs.float(), targets)

    def step(self, loss: torch.Tensor) -> None:
        self.tuned.step(loss)  # backward: a checkpointed block runs its forward again here
        self.record["conv_forwards"].append(self.forwards)

    def finish(self) -> dict[str, Any]:
        self.record["nonzero_end"] = _nonzero(self.net)
        self.record["notes"] = {k: str(v) for k, v in self.tuned.plan.notes.items()}
        return self.record


def train(tuned: Any, steps: int) -> dict[str, Any]:
    """autotune.apply's loop: `steps` optimizer steps over the probe's data, then FIT_END."""
    loader = tuned.dataloader(dataset(), shuffle=True)
    recorder = Recorder(tuned, loader)
    done = 0
    while done < steps:
        for batch in loader:
            recorder.step(recorder.loss(tuned.to_device(batch)))
            done += 1
            if done == steps:
                break
    tuned.close()
    return recorder.finish()


def main() -> None:
    import autotune

    session = autotune.session()
    tuned = session.prepare(model(), nn.CrossEntropyLoss())
    loader = tuned.dataloader(dataset(), shuffle=True)
    recorder = Recorder(tuned, loader)
    while not session.should_stop:
        for batch in loader:
            loss = recorder.loss(tuned.to_device(batch))
            recorder.step(loss)
        if session.report({"val_loss": float(loss)}):
            break
    tuned.close()
    with open(os.environ["PROBE_OUT"], "w") as out:
        json.dump(recorder.finish(), out)


if __name__ == "__main__":
    main()
