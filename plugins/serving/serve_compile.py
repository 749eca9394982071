"""serve_compile: torch.compile the served model (inductor). The first calls compile (seconds on
a CPU, ~20 s cold): that time is reported apart as compile time, never in latency. Modes: `none`,
`default`, `max-autotune-no-cudagraphs` (inductor benchmarks kernel choices: a longer compile for
possibly faster kernels), and on CUDA `reduce-overhead` (CUDA graphs: one launch replays a
call's kernels, for models small enough for launch overhead to count)."""

from __future__ import annotations

import shutil

from autotune import InferencePlan, Knob, Param, Unsupported, hookimpl

MODES = ("none", "default", "max-autotune-no-cudagraphs", "reduce-overhead")
CUDA_ONLY = ("reduce-overhead",)
ORDER = 90  # last: it compiles what every other transform made


class ServeCompile(Knob):
    name = "serve_compile"
    help = "torch.compile the served model (inductor); compile time reported apart from latency"
    kind = "systems"
    task = "inference"

    def params(self, hardware):
        # max-autotune compiles for minutes on a CPU: accepted, not searched there
        searched = ("none", "default", "reduce-overhead") if hardware.is_cuda else ("none", "default")
        return [Param("serve_compile", "categorical", choices=searched, accepted=MODES)]

    def baseline(self, hardware):
        return {"serve_compile": "none"}

    def unavailable(self, hardware):
        if hardware.device_type == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
            return "needs a C++ compiler on CPU (inductor)"
        return None

    def apply(self, settings, plan: InferencePlan):
        mode = settings["serve_compile"]
        if mode == "none":
            return
        if mode in CUDA_ONLY and plan.device.type != "cuda":
            raise Unsupported(f"serve_compile {mode} needs CUDA (CUDA graphs); this run is on {plan.device.type}")
        import torch

        plan.compiled = True
        plan.transform_model(lambda model: torch.compile(model, mode=mode), order=ORDER)
        plan.on_cleanup(torch._dynamo.reset)
        plan.notes["serve_compile"] = mode


@hookimpl
def register_knobs(register):
    register(ServeCompile())
