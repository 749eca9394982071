"""Test inference knob `constant_output`: serves a model that answers every call with zeros,
without looking at its inputs. It is the fastest model there is and a useless one: an
inference study must find it infeasible (its accuracy falls to chance, far past the guard) and
never call it the best, however low its latency."""

import torch

from autotune import InferencePlan, Knob, Param, hookimpl


class Zeros(torch.nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, inputs):
        return torch.zeros(inputs.shape[0], self.classes, device=inputs.device)


class ConstantOutput(Knob):
    name = "constant_output"
    help = "replace the served model by one that outputs zeros (a test of the accuracy guard)"
    kind = "statistical"
    task = "inference"

    def params(self, hardware):
        return [Param("constant_output", "bool")]

    def baseline(self, hardware):
        return {"constant_output": False}

    def apply(self, settings, plan: InferencePlan):
        if settings["constant_output"]:
            plan.transform_model(lambda model: Zeros(10), order=99)
            plan.notes["constant_output"] = "zeros"


@hookimpl
def register_knobs(register):
    register(ConstantOutput())
