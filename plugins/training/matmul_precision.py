"""matmul_precision: the internal precision of float32 matrix multiplications.

- `highest` (the baseline): full fp32; nothing is changed.
- `high`, `medium`: `torch.set_float32_matmul_precision`. On CUDA (Ampere and newer) both let
  cuBLAS use TF32 for fp32 matmuls (`medium` is no lower than `high` there).
- On a CPU with bf16 instructions (avx512_bf16 or amx_bf16), `medium` also sends fp32 matmuls
  and convolutions to oneDNN with bf16 multiplies allowed (`torch.backends.mkldnn.matmul.
  fp32_precision` and `torch.backends.mkldnn.conv.fp32_precision` = "bf16"). Weights,
  activations and outputs stay fp32, unlike bf16 autocast. Allowed, not forced: oneDNN picks the
  kernel per CPU (on an AMD EPYC with avx512_bf16 and no AMX, oneDNN 3.12 keeps an fp32 kernel,
  which was still faster than the default path there: measure, see docs/levers.md).

Where no reduced mode exists (a CPU without bf16 instructions, a GPU older than Ampere, MPS) the
knob does not apply, with the reason. Every flag it touches is put back when the run ends.
"""

from __future__ import annotations

import functools

from autotune import Knob, Param, TrainingPlan, Unsupported, hookimpl

LEVELS = ("highest", "high", "medium")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 instruction sets /proc/cpuinfo lists for this CPU (empty where it cannot tell)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return tuple(flag for flag in BF16_FLAGS if flag in present)
    except OSError:
        pass
    return ()


def _cuda_capability() -> tuple[int, int] | None:
    """The first GPU's compute capability; None without a usable GPU here (a CUDA fingerprint
    read on another machine), when nothing can be told."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(0)


def _flag_holders() -> dict[str, object]:
    """torch's per-backend fp32_precision flags that set_float32_matmul_precision or this knob
    may change, by name: all of them are saved and put back."""
    import torch

    backends = torch.backends
    return {"mkldnn.matmul": backends.mkldnn.matmul, "mkldnn.conv": backends.mkldnn.conv,
            "cuda.matmul": backends.cuda.matmul, "cudnn.conv": backends.cudnn.conv}


def _save() -> tuple[str, dict[str, str]]:
    import torch

    return torch.get_float32_matmul_precision(), {
        name: holder.fp32_precision for name, holder in _flag_holders().items()
    }


def _restore(saved: tuple[str, dict[str, str]]) -> None:
    import torch

    precision, flags = saved
    torch.set_float32_matmul_precision(precision)  # first: it rewrites per-backend flags
    for name, holder in _flag_holders().items():
        holder.fp32_precision = flags[name]


class MatmulPrecision(Knob):
    name = "matmul_precision"
    help = "fp32 matmul internal precision: highest, high, medium (TF32 on CUDA; bf16 in oneDNN on CPUs with bf16)"
    kind = "systems"

    def params(self, hardware):
        # only the levels that differ here are searched: on CUDA medium is TF32 like high; on
        # CPU high asks oneDNN for TF32, which CPUs without AMX-TF32 do not have
        searched = ("highest", "high") if hardware.is_cuda else ("highest", "medium")
        return [Param("matmul_precision", "categorical", choices=searched, accepted=LEVELS)]

    def baseline(self, hardware):
        return {"matmul_precision": "highest"}

    def unavailable(self, hardware):
        if hardware.device_type == "cpu":
            if not cpu_bf16_flags():
                listed = ", ".join(BF16_FLAGS)
                return f"no reduced-precision fp32 matmul on this CPU (/proc/cpuinfo lists none of {listed})"
            return None
        if hardware.is_cuda:
            capability = _cuda_capability()
            if capability is not None and capability < (8, 0):
                major, minor = capability
                return f"TF32 needs an Ampere or newer GPU (compute capability 8.0+, this one is {major}.{minor})"
            return None
        return f"torch has no reduced-precision fp32 matmul on {hardware.device_type}"

    def apply(self, settings, plan: TrainingPlan):
        level = settings["matmul_precision"]
        if level == "highest":
            return
        import torch

        saved = _save()
        plan.on_cleanup(lambda: _restore(saved))
        torch.set_float32_matmul_precision(level)
        if plan.device.type == "cuda":
            plan.notes["matmul_precision"] = f"{level}: TF32 fp32 matmuls (cuBLAS)"
        elif plan.device.type == "cpu" and level == "medium":
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
            torch.backends.mkldnn.conv.fp32_precision = "bf16"
            flags = "+".join(cpu_bf16_flags())
            plan.notes["matmul_precision"] = f"medium: fp32 matmuls and convolutions may use bf16 (oneDNN, {flags})"
        elif plan.device.type == "cpu":
            plan.notes["matmul_precision"] = f"{level}: no TF32 on CPU, fp32 matmuls run as at highest"
        else:
            raise Unsupported(
                f"matmul_precision {level}: torch has no reduced-precision fp32 matmul on {plan.device.type}")


@hookimpl
def register_knobs(register):
    register(MatmulPrecision())
