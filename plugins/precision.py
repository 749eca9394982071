"""precision: fp32, or bf16 / fp16 autocast. fp16 on CUDA uses a GradScaler so small gradients
do not underflow; bf16 has fp32's range and needs none."""

import torch

from autotune import Knob, Param, TrainingPlan, Unsupported, hookimpl

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Precision(Knob):
    name = "precision"
    help = "fp32, or mixed precision with torch.autocast (bf16, fp16 + GradScaler on CUDA)"
    kind = "systems"

    def params(self, hardware):
        # fp16 runs on CPU but is many times slower than fp32: not worth searching there.
        choices = [p for p in hardware.precisions if hardware.device_type != "cpu" or p != "fp16"]
        return [Param("precision", "categorical", choices=tuple(choices), accepted=("fp32", "bf16", "fp16"))]

    def baseline(self, hardware):
        return {"precision": "fp32"}

    def apply(self, settings, plan: TrainingPlan):
        precision = settings["precision"]
        if precision == "fp32":
            return
        if precision not in plan.hardware.precisions or precision not in DTYPES:
            raise Unsupported(f"precision {precision} is not supported on {plan.device.type}")
        plan.autocast_dtype = DTYPES[precision]
        plan.grad_scaler = precision == "fp16" and plan.device.type == "cuda"


@hookimpl
def register_knobs(register):
    register(Precision())
