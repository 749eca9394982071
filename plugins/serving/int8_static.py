"""int8_static: static int8 quantization of a convolutional model on the CPU, through PyTorch 2
export quantization (PT2E): the model is exported (`torch.export`, the batch dimension left
free), prepared with observers by the X86 inductor quantizer, calibrated on the first
`calibration_batches` validation batches, and converted (`prepare_pt2e`, `convert_pt2e`). PT2E is
no longer in torch.ao (torch 2.14): it lives in torchao (`torchao.quantization.pt2e`), an extra:
`pip install 'autotune[inference]'`; without it the knob is unavailable with that reason.

The converted program holds int8 weights and runs quantize/dequantize pairs around each
operator: in eager mode that is slower than fp32. Inductor (serve_compile) fuses those pairs into
int8 oneDNN kernels, which is where the speed is: the search measures both. It replaces fp32
arithmetic, so it is searched with serve_precision fp32 and without int8_dynamic."""

from __future__ import annotations

import importlib.util

from autotune import InferencePlan, Knob, Need, Param, Unsupported, hookimpl

INSTALL = "pip install 'autotune[inference]'"
ORDER = 10  # after channels_last (5), before compilation (90)


class Int8Static(Knob):
    name = "int8_static"
    help = "static int8 quantization (PT2E export, X86 inductor quantizer, calibrated) of a convolutional model on CPU"
    kind = "statistical"
    task = "inference"
    needs = (Need.CONVOLUTIONS,)

    def params(self, hardware):
        return [
            Param("int8_static", "bool", when={"serve_precision": ("fp32",), "int8_dynamic": (False,)},
                  help="static int8 (only with serve_precision fp32 and no int8_dynamic)"),
            Param("calibration_batches", "int", low=1, high=8, valid=(1, 1000), when={"int8_static": (True,)},
                  help="validation batches the observers see before conversion"),
        ]

    def baseline(self, hardware):
        return {"int8_static": False, "calibration_batches": 4}

    def unavailable(self, hardware):
        if importlib.util.find_spec("torchao") is None:
            return f"needs torchao ({INSTALL})"
        if hardware.device_type != "cpu":
            return f"the X86 inductor quantizer targets the CPU (this machine serves on {hardware.device_type})"
        return None

    def apply(self, settings, plan: InferencePlan):
        if not settings.get("int8_static"):
            return
        if plan.device.type != "cpu":
            raise Unsupported(f"int8_static runs on the CPU, not {plan.device.type}")
        batches = settings.get("calibration_batches", 4)

        def quantize(model):
            converted = quantize_pt2e(model, plan, batches)
            plan.notes["int8_static"] = (
                f"PT2E static int8 (X86 inductor quantizer), calibrated on {batches} validation batches of "
                f"{plan.batch_size}; runs as quantize/dequantize pairs unless serve_compile fuses them"
            )
            return converted

        plan.transform_model(quantize, order=ORDER)


def quantize_pt2e(model, plan: InferencePlan, batches: int):
    """Export `model` with a free batch dimension, prepare, calibrate on `batches` validation
    batches, convert: the quantized program (a torch.fx GraphModule)."""
    import torch
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    args, kwargs = plan.inputs(plan.example)
    batch = torch.export.Dim("batch")

    def free(value):
        return {0: batch} if isinstance(value, torch.Tensor) and value.dim() > 0 else None

    shapes = {"args": tuple(free(a) for a in args), "kwargs": {k: free(v) for k, v in kwargs.items()}}
    dynamic = _by_signature(model, args, kwargs, shapes)
    exported = torch.export.export(model, args, kwargs, dynamic_shapes=dynamic).module()
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for call in plan.calibration(batches):
            call_args, call_kwargs = plan.inputs(call)
            prepared(*call_args, **call_kwargs)
    return without_unused_weights(convert_pt2e(prepared))


def without_unused_weights(program):
    """The converted program without the fp32 weights it no longer reads: conversion folds each
    quantized weight into an int8 constant but leaves the original parameter on the module,
    where it would be saved, and counted in the model's size, beside its int8 copy."""
    used = {node.target for node in program.graph.nodes if node.op == "get_attr"}
    for name, _ in [*program.named_parameters(), *program.named_buffers()]:
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(program.get_submodule(owner) if owner else program, leaf)
    program.delete_all_unused_submodules()
    program.recompile()
    return program


def _by_signature(model, args, kwargs, shapes):
    """torch.export's dynamic_shapes by the forward's parameter names (its accepted form for a
    mix of positional and keyword arguments)."""
    import inspect

    names = list(inspect.signature(model.forward).parameters)
    out = {name: shape for name, shape in zip(names, shapes["args"], strict=False)}
    out.update(shapes["kwargs"])
    return out


@hookimpl
def register_knobs(register):
    register(Int8Static())
