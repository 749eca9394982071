"""precision: fp32, or bf16 / fp16 autocast. fp16 on CUDA uses a GradScaler so small gradients
do not underflow; bf16 has fp32's range and needs none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune import Knob, Param, TrainingPlan, Unsupported, hookimpl

if TYPE_CHECKING:
    import torch


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The torch dtype autocast runs in for `precision` ("bf16", "fp16"); None for any other."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


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
        dtype = autocast_dtype(precision)
        if precision not in plan.hardware.precisions or dtype is None:
            raise Unsupported(f"precision {precision} is not supported on {plan.device.type}")
        plan.autocast_dtype = dtype
        plan.grad_scaler = precision == "fp16" and plan.device.type == "cuda"


@hookimpl
def register_knobs(register):
    register(Precision())
