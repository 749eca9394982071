"""int8_dynamic: dynamic int8 quantization of the model's Linear layers
(`torch.ao.quantization.quantize_dynamic`): weights stored in int8, activations quantized on the
fly at each call, so no calibration data is needed. It speeds up models whose time goes to
Linear layers (transformers, MLPs, a CNN's classifier) on the CPU, where its kernels are
(fbgemm on x86, qnnpack on ARM). It replaces fp32 arithmetic, so it is searched with
serve_precision fp32 only; convolutions are left in fp32 (static quantization does those)."""

from __future__ import annotations

import warnings

from autotune import InferencePlan, Knob, Param, Unsupported, hookimpl

ORDER = 10  # after channels_last (5), before a precision cast (20) and compilation (90)


class Int8Dynamic(Knob):
    name = "int8_dynamic"
    help = "dynamic int8 quantization of Linear layers (CPU): int8 weights, activations quantized per call"
    kind = "statistical"
    task = "inference"

    def params(self, hardware):
        return [Param("int8_dynamic", "bool", when={"serve_precision": ("fp32",)},
                      help="dynamic int8 Linear layers (only with serve_precision fp32)")]

    def baseline(self, hardware):
        return {"int8_dynamic": False}

    def unavailable(self, hardware):
        if hardware.device_type != "cpu":
            return f"dynamic int8 kernels run on the CPU (this machine serves on {hardware.device_type})"
        return None

    def apply(self, settings, plan: InferencePlan):
        if not settings.get("int8_dynamic"):
            return
        import torch
        from torch.ao.quantization import quantize_dynamic

        if plan.device.type != "cpu":
            raise Unsupported(f"int8_dynamic runs on the CPU, not {plan.device.type}")

        def quantize(model):
            linear = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
            if not linear:
                plan.notes["int8_dynamic"] = "nothing quantized: the model has no Linear layers"
                return model
            with warnings.catch_warnings():
                # torch 2.14 marks torch.ao.quantization deprecated (torchao's quantize_ is its
                # successor) yet ships and runs it; one line per trial log is noise, not news
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
                quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            plan.notes["int8_dynamic"] = f"{linear} Linear layers quantized to int8 (dynamic activations)"
            return quantized

        plan.transform_model(quantize, order=ORDER)


@hookimpl
def register_knobs(register):
    register(Int8Dynamic())
