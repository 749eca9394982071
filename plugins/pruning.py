"""pruning: zero the smallest-magnitude fraction of conv and linear weights (global L1,
torch.nn.utils.prune), made permanent before training so no mask multiplies every step.

Unstructured sparsity does not make dense kernels faster: the measured effect is usually none or
a small slowdown. autotune measures it rather than assuming a speed-up.
"""

import torch
from torch.nn.utils import prune

from autotune import Knob, Param, TrainingPlan, hookimpl

PRUNABLE = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def prune_model(model: torch.nn.Module, amount: float) -> torch.nn.Module:
    targets = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]
    if targets and amount > 0:
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
        for module, name in targets:
            prune.remove(module, name)
    return model


class Pruning(Knob):
    name = "pruning"
    help = "fraction of conv/linear weights zeroed by global L1 pruning before training"
    kind = "statistical"

    def params(self, hardware):
        return [Param("pruning", "float", low=0.0, high=0.7, valid=(0.0, 0.99))]

    def baseline(self, hardware):
        return {"pruning": 0.0}

    def apply(self, settings, plan: TrainingPlan):
        amount = settings["pruning"]
        if amount > 0:
            plan.transform_model(lambda model: prune_model(model, amount), order=10)


@hookimpl
def register_knobs(register):
    register(Pruning())
