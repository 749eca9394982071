"""serve_channels_last: NHWC memory format for the served model and its 4-D inputs, which
oneDNN's CPU convolutions and tensor-core kernels often prefer. Only for models with
convolutions fed images: elsewhere it would change nothing."""

from __future__ import annotations

from autotune import InferencePlan, Knob, Need, Param, hookimpl

ORDER = 5  # first: quantization and compilation see the final layout


class ServeChannelsLast(Knob):
    name = "serve_channels_last"
    help = "channels_last (NHWC) memory format for the served model and its 4-D inputs"
    kind = "systems"
    task = "inference"
    needs = (Need.CONVOLUTIONS, Need.IMAGE_INPUTS)

    def params(self, hardware):
        return [Param("serve_channels_last", "bool")]

    def baseline(self, hardware):
        return {"serve_channels_last": False}

    def apply(self, settings, plan: InferencePlan):
        if not settings["serve_channels_last"]:
            return
        import torch

        layout = torch.channels_last

        def nhwc(tensor):
            return tensor.contiguous(memory_format=layout) if tensor.dim() == 4 else tensor

        plan.transform_model(lambda model: model.to(memory_format=layout), order=ORDER)
        plan.transform_inputs(nhwc)


@hookimpl
def register_knobs(register):
    register(ServeChannelsLast())
