"""serve_threads: intra-op CPU threads while serving (torch.set_num_threads). At batch 1 a small
model's kernels are short, and synchronising many threads can cost more than it saves."""

from __future__ import annotations

from autotune import InferencePlan, Knob, Param, hookimpl


class ServeThreads(Knob):
    name = "serve_threads"
    help = "torch.set_num_threads while serving"
    kind = "systems"
    task = "inference"

    def params(self, hardware):
        return [Param("serve_threads", "int", low=1, high=max(1, hardware.cpu_count), valid=(1, 1024))]

    def baseline(self, hardware):
        return {"serve_threads": max(1, hardware.cpu_count)}

    def apply(self, settings, plan: InferencePlan):
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(settings["serve_threads"])
        plan.threads = torch.get_num_threads()
        plan.notes["serve_threads"] = plan.threads
        plan.on_cleanup(lambda: torch.set_num_threads(previous))


@hookimpl
def register_knobs(register):
    register(ServeThreads())
