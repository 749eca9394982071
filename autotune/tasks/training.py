"""training: trials train the workload's model; the baseline's metric sets the target."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autotune.budget import Budget
from autotune.errors import UsageError
from autotune.tasks.base import BaselineTarget, Task

if TYPE_CHECKING:
    from autotune.metrics import Metric
    from autotune.objectives import Objective
    from autotune.spec import StudySpec


class Training(Task):
    name = "training"
    help = "tune how a model is trained (the default)"

    def validate(self, spec: "StudySpec", objective: "Objective") -> None:
        if objective.task != self.name:
            raise UsageError(f"--objective {spec.objective} judges serving a model: add --task {objective.task}")
        for option, value in (("--checkpoint", spec.checkpoint), ("--from-study", spec.from_study)):
            if value is not None:
                raise UsageError(f"{option} gives the model an inference study serves: add --task inference")

    def check_budget(self, spec: "StudySpec") -> None:
        Budget(**spec.budget)

    def default_space(self, device_type: str) -> str:
        # the bundled cpu and gpu spaces hold what is worth searching on each
        return {"cuda": "gpu", "cpu": "cpu"}.get(device_type, "default")

    def target_from_baseline(self, metric: "Metric", result: dict[str, Any], spec: "StudySpec") -> BaselineTarget:
        target = metric.target_from(result["metric_value"], result.get("val_samples"))
        return BaselineTarget(target, f"target set from the baseline: {metric.bound(target)}", {})
