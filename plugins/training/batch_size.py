"""batch_size: samples per optimizer step. Larger batches raise throughput until memory or
convergence per sample pushes back."""

from autotune import Knob, Param, TrainingPlan, hookimpl


class BatchSize(Knob):
    name = "batch_size"
    help = "samples per training step (DataLoader batch_size)"
    kind = "statistical"

    def params(self, hardware):
        high = 1024 if hardware.is_cuda else 512
        return [Param("batch_size", "int", low=16, high=high, log=True, valid=(1, None))]

    def baseline(self, hardware):
        return {"batch_size": 64}

    def apply(self, settings, plan: TrainingPlan):
        plan.batch_size = settings["batch_size"]


@hookimpl
def register_knobs(register):
    register(BatchSize())
