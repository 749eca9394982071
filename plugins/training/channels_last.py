"""channels_last: NHWC memory format for model and inputs, which convolution kernels on tensor
cores (and oneDNN on CPU) often prefer."""

from autotune import Knob, Need, Param, TrainingPlan, hookimpl


class ChannelsLast(Knob):
    name = "channels_last"
    help = "channels_last (NHWC) memory format for the model and 4-D inputs"
    kind = "systems"
    # on a model without convolutions, or inputs without an image's four dimensions, NHWC
    # changes nothing: searching it would spend trials on a no-op
    needs = (Need.CONVOLUTIONS, Need.IMAGE_INPUTS)

    def params(self, hardware):
        return [Param("channels_last", "bool")]

    def baseline(self, hardware):
        return {"channels_last": False}

    def apply(self, settings, plan: TrainingPlan):
        if not settings["channels_last"]:
            return
        import torch

        channels_last = torch.channels_last

        def to_channels_last(tensor):
            return tensor.contiguous(memory_format=channels_last) if tensor.dim() == 4 else tensor

        plan.transform_model(lambda model: model.to(memory_format=channels_last), order=20)
        plan.transform_inputs(to_channels_last)


@hookimpl
def register_knobs(register):
    register(ChannelsLast())
