"""Test knob `probe_smoothing`: label smoothing that reports what reached the training loop.

When the run ends it writes JSON to $AUTOTUNE_TEST_RECORD: the value it was given, the class of
the loss the plan ended up with, how often that loss ran with gradients (training steps) and
without (validation), the first training loss next to plain cross-entropy on the same outputs,
and the plan's notes.
"""

import json
import os

import torch

from autotune import Knob, Param, TrainingPlan, hookimpl


class RecordingLoss(torch.nn.CrossEntropyLoss):
    def __init__(self, smoothing: float) -> None:
        super().__init__(label_smoothing=smoothing)
        self.train_calls = 0
        self.eval_calls = 0
        self.first = None

    def forward(self, outputs, targets):
        loss = super().forward(outputs, targets)
        if torch.is_grad_enabled():
            self.train_calls += 1
            if self.first is None:
                plain = torch.nn.functional.cross_entropy(outputs.float(), targets)
                self.first = {"smoothed": float(loss.detach()), "plain": float(plain.detach())}
        else:
            self.eval_calls += 1
        return loss


class ProbeSmoothing(Knob):
    name = "probe_smoothing"
    help = "test knob: label smoothing that records what the run used"
    kind = "statistical"

    def params(self, hardware):
        return [Param("probe_smoothing", "float", low=0.0, high=0.5, valid=(0.0, 0.9))]

    def baseline(self, hardware):
        return {"probe_smoothing": 0.0}

    def apply(self, settings, plan: TrainingPlan):
        value = settings["probe_smoothing"]
        plan.loss_fn = RecordingLoss(value)
        plan.notes["probe_smoothing"] = value

        def report():
            path = os.environ.get("AUTOTUNE_TEST_RECORD")
            if not path:
                return
            loss = plan.loss_fn
            record = {
                "value": value,
                "loss_fn": type(loss).__name__,
                "label_smoothing": getattr(loss, "label_smoothing", None),
                "train_calls": getattr(loss, "train_calls", 0),
                "eval_calls": getattr(loss, "eval_calls", 0),
                "first_loss": getattr(loss, "first", None),
                "notes": plan.notes,
            }
            with open(path, "w") as f:
                json.dump(record, f, default=str)

        plan.on_cleanup(report)


@hookimpl
def register_knobs(register):
    register(ProbeSmoothing())
