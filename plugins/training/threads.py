"""threads: intra-op CPU threads (torch.set_num_threads). More is not always faster: small
kernels lose to synchronisation, and DataLoader workers need cores too."""

from autotune import Knob, Param, TrainingPlan, hookimpl


class Threads(Knob):
    name = "threads"
    help = "torch.set_num_threads for the training process"
    kind = "systems"

    def params(self, hardware):
        return [Param("threads", "int", low=1, high=max(1, hardware.cpu_count), valid=(1, 1024))]

    def baseline(self, hardware):
        return {"threads": max(1, hardware.cpu_count)}

    def apply(self, settings, plan: TrainingPlan):
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(settings["threads"])
        plan.notes["threads"] = torch.get_num_threads()
        plan.on_cleanup(lambda: torch.set_num_threads(previous))


@hookimpl
def register_knobs(register):
    register(Threads())
