"""workers: DataLoader worker processes. With workers, batches are prepared while the model
trains; workers persist across epochs (no restart cost) and pinned memory speeds host-to-GPU
copies on CUDA."""

from autotune import Knob, Param, TrainingPlan, hookimpl


class Workers(Knob):
    name = "workers"
    help = "DataLoader num_workers (persistent, with pin_memory on CUDA)"
    kind = "systems"

    def params(self, hardware):
        return [Param("workers", "int", low=0, high=max(1, min(8, hardware.cpu_count)), valid=(0, 256))]

    def baseline(self, hardware):
        return {"workers": 0}

    def apply(self, settings, plan: TrainingPlan):
        workers = settings["workers"]
        plan.loader["num_workers"] = workers
        if workers > 0:
            plan.loader["persistent_workers"] = True
            plan.loader["prefetch_factor"] = 2
        if plan.device.type == "cuda":
            plan.loader["pin_memory"] = True


@hookimpl
def register_knobs(register):
    register(Workers())
