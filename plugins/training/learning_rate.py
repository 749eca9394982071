"""learning_rate: the optimizer's step size, searched on a log scale."""

from autotune import Knob, Param, TrainingPlan, hookimpl


class LearningRate(Knob):
    name = "learning_rate"
    help = "optimizer learning rate (log scale)"
    kind = "statistical"

    def params(self, hardware):
        return [Param("learning_rate", "float", low=1e-4, high=0.3, log=True, valid=(1e-12, 10.0))]

    def baseline(self, hardware):
        return {"learning_rate": 0.01}

    def apply(self, settings, plan: TrainingPlan):
        plan.optimizer_kwargs["lr"] = settings["learning_rate"]


@hookimpl
def register_knobs(register):
    register(LearningRate())
