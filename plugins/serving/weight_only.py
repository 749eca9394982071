"""weight_only: weight-only quantization of the model's Linear layers through torchao's
`quantize_`: `int8` stores each weight as int8 with one fp32 scale per output row
(`Int8WeightOnlyConfig`, torchao's `Int8Tensor`); activations stay in floating point, so no
calibration data is needed. The weights shrink about 4x; eagerly each call converts the int8
weights back to floating point before the matmul (torchao's CPU path), so the speed, if any, comes
from memory traffic on large layers or from serve_compile fusing that conversion (on the small
digits model it was about 1.3x slower than fp32 at batch 1): measured in every trial, never
assumed.

int4 is not offered: torchao 0.18's int4 weight-only layouts do not run on a CPU (`plain` and
`preshuffled` need the mslk kernels, `plain_int32` runs on XPU and NPU only, `tile_packed_to_4d`
is tinygemm: CUDA, compute capability 8.0+, bf16 weights), and no GPU has run it here.

torchao is an extra (`pip install 'autotune[inference]'`); without it the knob is unavailable with
that reason. It replaces fp32 arithmetic, so it is searched with serve_precision fp32 and, on the
CPU, without int8_dynamic. It cannot be combined with int8_static either (which quantizes the same
layers); a trial asking for both is unsupported: a condition on int8_static would hide this knob
wherever int8_static is left out (every model without convolutions), since the search space
treats a condition on an absent setting as never holding."""

from __future__ import annotations

import copy
import importlib.util

from autotune import InferencePlan, Knob, Param, Unsupported, hookimpl

INSTALL = "pip install 'autotune[inference]'"
ORDER = 10  # with the other quantization: after channels_last (5), before a precision cast (20) and compilation (90)
SCHEMES = ("none", "int8")


class WeightOnly(Knob):
    name = "weight_only"
    help = "weight-only int8 quantization of Linear layers (torchao quantize_): int8 weights, fp32 activations"
    kind = "statistical"
    task = "inference"

    def params(self, hardware):
        when = {"serve_precision": ("fp32",)}
        if hardware.device_type == "cpu":
            # int8_dynamic exists only on the CPU: elsewhere a condition on it would never hold
            when["int8_dynamic"] = (False,)
        return [Param("weight_only", "categorical", choices=SCHEMES, when=when,
                      help="weight-only quantization of Linear layers (only with serve_precision fp32 "
                           "and no int8_dynamic)")]

    def baseline(self, hardware):
        return {"weight_only": "none"}

    def unavailable(self, hardware):
        if importlib.util.find_spec("torchao") is None:
            return f"needs torchao ({INSTALL})"
        return None

    def apply(self, settings, plan: InferencePlan):
        scheme = settings.get("weight_only", "none")
        if scheme == "none":
            return

        def quantize(model):
            # a knob sees only its own settings: int8_static (same order, registered first) has
            # run when it left its note, and its exported program has no Linear modules left
            if "int8_static" in plan.notes:
                raise Unsupported("weight_only and int8_static both quantize the Linear layers: choose one")
            quantized, count = quantize_weights(model)
            plan.notes["weight_only"] = (
                f"{count} Linear layers quantized to int8 (weight-only, per output row; activations fp32)"
                if count else "nothing quantized: the model has no Linear layers"
            )
            return quantized

        plan.transform_model(quantize, order=ORDER)


def quantize_weights(model):
    """A copy of `model` with its Linear layers' weights in int8 (torchao `Int8Tensor`), and how
    many layers were quantized. The trained model itself is left as it was (quantize_ works in
    place), as int8_dynamic leaves it."""
    import torch
    from torchao.quantization import Int8Tensor, Int8WeightOnlyConfig, quantize_

    if not any(isinstance(m, torch.nn.Linear) for m in model.modules()):
        return model, 0
    quantized = copy.deepcopy(model)
    # set_inductor_config=False: torchao's default changes torch._inductor.config for the whole
    # process (coordinate-descent tuning ...), which would outlive the trial and slow every later
    # compile
    quantize_(quantized, Int8WeightOnlyConfig(set_inductor_config=False))
    count = 0
    for module in quantized.modules():
        if isinstance(module, torch.nn.Linear) and isinstance(module.weight, Int8Tensor):
            count += 1
            # quantize_ sets a per-instance extra_repr (a functools.partial) that pickle refuses:
            # without it the module saves whole, and its size is measured as the fp32 model's is
            module.__dict__.pop("extra_repr", None)
    return quantized, count


@hookimpl
def register_knobs(register):
    register(WeightOnly())
