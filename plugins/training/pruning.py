"""pruning: zero the smallest-magnitude fraction of conv and linear weights (global L1,
torch.nn.utils.prune), made permanent before training so no mask multiplies every forward pass.

The zeros stay zero: the pruned weights' gradients are masked after backward, and with a zero
gradient SGD (with momentum), Adam, AdamW and RMSprop all leave a zero weight at zero.

A model-size knob, not a speed knob: unstructured (masked) pruning makes the model sparse, not
faster. The tensors keep their shapes and dense kernels multiply the zeros like any other value,
so a step costs the same (the masking of gradients adds a little); what shrinks is the model once
stored sparse or compressed. For fewer operations per step, remove whole channels instead:
`structured_pruning` (plugins/training/structured_pruning.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune import Knob, Param, TrainingPlan, hookimpl

if TYPE_CHECKING:
    import torch


def prunable() -> tuple[type[torch.nn.Module], ...]:
    """The layer types whose `weight` this knob prunes."""
    import torch

    return (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)


def prune_model(model: torch.nn.Module, amount: float) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Prune in place; return (weight, keep-mask) pairs for the layers that were pruned."""
    from torch.nn.utils import prune

    layer_types = prunable()
    targets = [(m, "weight") for m in model.modules() if isinstance(m, layer_types)]
    if not targets or amount <= 0:
        return []
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in targets:
        prune.remove(module, name)
    return [(module.weight, module.weight.detach() != 0) for module, _ in targets]


class Pruning(Knob):
    name = "pruning"
    help = "fraction of conv/linear weights zeroed (global L1): sparser, not faster (dense kernels); a model-size knob"
    kind = "statistical"

    def params(self, hardware):
        return [Param("pruning", "float", low=0.0, high=0.7, valid=(0.0, 0.99))]

    def baseline(self, hardware):
        return {"pruning": 0.0}

    def apply(self, settings, plan: TrainingPlan):
        amount = settings["pruning"]
        if amount <= 0:
            return
        masks: list[tuple[torch.nn.Parameter, torch.Tensor]] = []

        def prune_before_training(model):
            masks.extend(prune_model(model, amount))
            return model

        def keep_pruned_weights_at_zero(model):
            for weight, keep in masks:
                if weight.grad is not None:
                    weight.grad.mul_(keep)

        plan.transform_model(prune_before_training, order=10)
        plan.on_gradients(keep_pruned_weights_at_zero)


@hookimpl
def register_knobs(register):
    register(Pruning())
