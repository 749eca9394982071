"""tensorrt: compile the served model with TensorRT through torch-tensorrt (its dynamo path) on
an NVIDIA GPU, in the serving precision. Unavailable without CUDA, and without torch-tensorrt
(`pip install 'autotune[tensorrt]'`, a separate extra: gigabytes of TensorRT libraries, CUDA
only, and each release built for one torch version). Its build happens at the first call,
reported as compile time, never in latency."""

from __future__ import annotations

import importlib.util

from autotune import InferencePlan, Knob, Param, Unsupported, hookimpl

INSTALL = "pip install 'autotune[tensorrt]'"
ORDER = 85  # after quantization and the precision cast, instead of (before) torch.compile


class TensorRT(Knob):
    name = "tensorrt"
    help = "compile the served model with TensorRT (torch-tensorrt, NVIDIA GPUs)"
    kind = "systems"
    task = "inference"

    def params(self, hardware):
        return [Param("tensorrt", "bool")]

    def baseline(self, hardware):
        return {"tensorrt": False}

    def unavailable(self, hardware):
        if not hardware.is_cuda:
            return f"needs CUDA: TensorRT runs on NVIDIA GPUs (this machine serves on {hardware.device_type})"
        if importlib.util.find_spec("torch_tensorrt") is None:
            return f"needs torch-tensorrt ({INSTALL})"
        return None

    def apply(self, settings, plan: InferencePlan):
        if not settings["tensorrt"]:
            return
        import torch

        def compile_trt(model):
            import torch_tensorrt

            args, kwargs = plan.inputs(plan.example)
            if kwargs:
                raise Unsupported("tensorrt: the model takes keyword arguments; this knob passes positional inputs")

            def shape_range(tensor):
                # the engine serves batch 1 (latency) up to the plan's batch size (throughput)
                rest = tuple(tensor.shape[1:])
                return torch_tensorrt.Input(min_shape=(1, *rest), opt_shape=(plan.batch_size, *rest),
                                            max_shape=(max(plan.batch_size, 1), *rest), dtype=tensor.dtype)

            inputs = [shape_range(a) if isinstance(a, torch.Tensor) and a.dim() else a for a in args]
            return torch_tensorrt.compile(model, ir="dynamo", inputs=inputs,
                                          enabled_precisions={plan.dtype or torch.float32})

        plan.compiled = True
        plan.transform_model(compile_trt, order=ORDER)
        plan.notes["tensorrt"] = "torch-tensorrt (dynamo)"


@hookimpl
def register_knobs(register):
    register(TensorRT())
