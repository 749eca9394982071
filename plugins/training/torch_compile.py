"""torch_compile: compile the model with torch.compile (inductor). Compilation costs seconds up
front, so it pays only when the run is long enough; time-to-accuracy counts that cost.

`compile_mode` (when torch_compile is on) is torch.compile's `mode`: `default`, or
`max-autotune-no-cudagraphs` (inductor benchmarks kernel choices while compiling: a longer
compile for possibly faster kernels), and on CUDA `reduce-overhead` (CUDA graphs: replays the
captured kernels with one launch, for models whose steps are short enough for launch overhead to
count). CUDA graphs need CUDA: `reduce-overhead` elsewhere is `unsupported`, with that reason."""

import shutil

from autotune import Knob, Param, TrainingPlan, Unsupported, hookimpl

MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead")
CUDA_ONLY = ("reduce-overhead",)


class TorchCompile(Knob):
    name = "torch_compile"
    help = "torch.compile the model (inductor); compile time counts against the run"
    kind = "systems"

    def params(self, hardware):
        searched = MODES if hardware.is_cuda else tuple(m for m in MODES if m not in CUDA_ONLY)
        return [
            Param("torch_compile", "bool"),
            Param("compile_mode", "categorical", choices=searched, accepted=MODES,
                  when={"torch_compile": (True,)}, help="torch.compile mode (reduce-overhead: CUDA graphs, CUDA only)"),
        ]

    def baseline(self, hardware):
        return {"torch_compile": False, "compile_mode": "default"}

    def unavailable(self, hardware):
        if hardware.device_type == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
            return "needs a C++ compiler on CPU (inductor)"
        return None

    def apply(self, settings, plan: TrainingPlan):
        if not settings["torch_compile"]:
            return
        mode = settings.get("compile_mode", "default")
        if mode in CUDA_ONLY and plan.device.type != "cuda":
            raise Unsupported(f"compile_mode {mode} needs CUDA (CUDA graphs); this run is on {plan.device.type}")
        import torch

        plan.transform_model(lambda model: torch.compile(model, mode=mode), order=90)
        plan.on_cleanup(torch._dynamo.reset)
        plan.notes["compile_mode"] = mode


@hookimpl
def register_knobs(register):
    register(TorchCompile())
