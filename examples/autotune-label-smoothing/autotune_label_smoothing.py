"""label_smoothing: soften the one-hot targets of cross-entropy (Szegedy et al., 2016).

A statistical knob: it changes what the model learns, so autotune weighs it against accuracy,
not only speed. The workload's validation loss is computed with the same smoothed loss.
"""

import torch

from autotune import Knob, Param, TrainingPlan, hookimpl


class LabelSmoothing(Knob):
    name = "label_smoothing"
    help = "cross-entropy label smoothing (0 = plain one-hot targets)"
    kind = "statistical"

    def params(self, hardware):
        return [Param("label_smoothing", "float", low=0.0, high=0.2, valid=(0.0, 0.5))]

    def baseline(self, hardware):
        return {"label_smoothing": 0.0}

    def apply(self, settings, plan: TrainingPlan):
        value = settings["label_smoothing"]
        plan.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=value)
        plan.notes["label_smoothing"] = value


@hookimpl
def register_knobs(register):
    register(LabelSmoothing())
