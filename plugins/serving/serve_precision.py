"""serve_precision: the floating-point type a trained model is served in. bf16 and fp16 halve
the weights and can double the speed where the hardware has kernels for them (CUDA; CPUs with
AVX-512 BF16 or AMX), and run many times slower where it has none (fp16 convolutions on most
CPUs, bf16 on a CPU without bf16 instructions): measured in every trial, never assumed. The
weights and the floating inputs are cast (`model.to(dtype)`), not autocast, so the model's size
and memory shrink too; validation reads the outputs back in fp32."""

from __future__ import annotations

from autotune import InferencePlan, Knob, Param, Unsupported, hookimpl

PRECISIONS = ("fp32", "bf16", "fp16")


def dtype_of(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class ServePrecision(Knob):
    name = "serve_precision"
    help = "serve in fp32, bf16 or fp16 (weights and inputs cast): smaller and, with kernels for it, faster"
    kind = "statistical"  # the outputs change: the accuracy guard judges by how much
    task = "inference"

    def params(self, hardware):
        # every precision the device runs at all: on a CPU without bf16 or fp16 kernels the
        # search finds them slow, it does not guess
        runs = tuple(p for p in PRECISIONS if p in hardware.precisions)
        return [Param("serve_precision", "categorical", choices=runs, accepted=PRECISIONS)]

    def baseline(self, hardware):
        return {"serve_precision": "fp32"}

    def apply(self, settings, plan: InferencePlan):
        precision = settings["serve_precision"]
        if precision == "fp32":
            return
        if precision not in plan.hardware.precisions:
            raise Unsupported(f"serve_precision {precision} does not run on {plan.device.type}")
        dtype = dtype_of(precision)
        plan.dtype = dtype

        def cast(tensor):
            return tensor.to(dtype) if tensor.is_floating_point() else tensor

        plan.transform_model(lambda model: model.to(dtype), order=20)
        plan.transform_inputs(cast)
        plan.notes["serve_precision"] = precision


@hookimpl
def register_knobs(register):
    register(ServePrecision())
