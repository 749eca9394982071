"""torch_compile: compile the model with torch.compile (inductor). Compilation costs seconds up
front, so it pays only when the run is long enough; time-to-accuracy counts that cost."""

import shutil

from autotune import Knob, Param, TrainingPlan, hookimpl


class TorchCompile(Knob):
    name = "torch_compile"
    help = "torch.compile the model (inductor); compile time counts against the run"
    kind = "systems"

    def params(self, hardware):
        return [Param("torch_compile", "bool")]

    def baseline(self, hardware):
        return {"torch_compile": False}

    def unavailable(self, hardware):
        if hardware.device_type == "cpu" and not (shutil.which("cc") or shutil.which("gcc")):
            return "needs a C++ compiler on CPU (inductor)"
        return None

    def apply(self, settings, plan: TrainingPlan):
        if not settings["torch_compile"]:
            return
        import torch

        plan.transform_model(torch.compile, order=90)
        plan.on_cleanup(torch._dynamo.reset)


@hookimpl
def register_knobs(register):
    register(TorchCompile())
