"""channels_last: NHWC memory format for model and inputs, which convolution kernels on tensor
cores (and oneDNN on CPU) often prefer."""

import torch

from autotune import Knob, Param, TrainingPlan, hookimpl


def _to_channels_last(tensor):
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor


class ChannelsLast(Knob):
    name = "channels_last"
    help = "channels_last (NHWC) memory format for the model and 4-D inputs"
    kind = "systems"

    def params(self, hardware):
        return [Param("channels_last", "bool")]

    def baseline(self, hardware):
        return {"channels_last": False}

    def apply(self, settings, plan: TrainingPlan):
        if settings["channels_last"]:
            plan.transform_model(lambda model: model.to(memory_format=torch.channels_last), order=20)
            plan.transform_inputs(_to_channels_last)


@hookimpl
def register_knobs(register):
    register(ChannelsLast())
