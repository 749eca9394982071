"""inference: trials serve a trained model (autotune.inference); the unoptimized model's metric
sets an accuracy guard, and a trial's latency is read on the baseline's clock."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from autotune.errors import UsageError
from autotune.tasks.base import BaselineTarget, Task, Verdict, finite

if TYPE_CHECKING:
    from autotune.metrics import Metric
    from autotune.objectives import Objective
    from autotune.spec import StudySpec

# a drop equal to --max-drop is allowed, whatever the last bit of floating point says
TOLERANCE = 1e-12


class Inference(Task):
    name = "inference"
    help = "tune how a trained model is served (a --checkpoint, or the best of --from-study)"
    serves_model = True

    def validate(self, spec: "StudySpec", objective: "Objective") -> None:
        if objective.task != self.name:
            raise UsageError(f"--objective {spec.objective} judges training; an inference study's is latency")
        if spec.script is not None:
            raise UsageError("--task inference serves a workload's model; a --script trains its own")
        if spec.checkpoint is None and spec.from_study is None:  # (both: the model trained from the study)
            raise UsageError("--task inference needs the model to serve: --checkpoint FILE (from `autotune trial run "
                             "--save-model FILE`) or --from-study NAME (a finished training study)")
        if spec.checkpoint is not None and not os.path.isfile(spec.checkpoint):
            raise UsageError(f"--checkpoint {spec.checkpoint}: no such file")
        if not 0.0 <= spec.max_drop < 1.0:
            raise UsageError(f"--max-drop is a relative drop of the metric, 0 <= drop < 1, got {spec.max_drop}")
        if spec.iterations < 1:
            raise UsageError(f"--iterations must be at least 1, got {spec.iterations}")
        if spec.target is not None:
            raise UsageError("--target is for training; an inference study's guard is --max-drop")
        if spec.keep_recipe:
            raise UsageError("--keep-recipe keeps a training recipe; an inference study serves a trained model")

    def default_space(self, device_type: str) -> str:
        # every inference knob over its own range (the cpu and gpu spaces tune training knobs)
        return "default"

    def budget_text(self, spec: "StudySpec") -> str:
        return f"{spec.iterations} timed calls"

    def target_from_baseline(self, metric: "Metric", result: dict[str, Any], spec: "StudySpec") -> BaselineTarget:
        """The accuracy guard: the unoptimized model's own value, less --max-drop of it."""
        reference = result["metric_value"]
        target = metric.guard(reference, spec.max_drop)
        said = (f"accuracy guard from the unoptimized model: {metric.bound(target)} (at most "
                f"{spec.max_drop:.1%} worse than its {reference:.4g})")
        return BaselineTarget(target, said, {"reference_metric": reference})

    def judge(self, objective: "Objective", reached: float | None, target: float | None,
              reference: float | None, spec: "StudySpec") -> Verdict:
        """Against the accuracy guard: the metric's relative drop from the unoptimized model's,
        infeasible (never the best) when it drops more than --max-drop."""
        metric = objective.metric
        drop = metric.drop(reference, reached) if finite(reached) and reference is not None else None
        feasible = drop is not None and drop <= spec.max_drop + TOLERANCE
        constraint = 0.0 if feasible else (drop if drop is not None and drop > 0 else 1.0)
        if feasible:
            return Verdict(constraint, True, drop)
        shown = "nothing" if reached is None else f"{reached:.4g}"
        worse = f", {drop:.2%} worse" if drop is not None else ""
        base = "-" if reference is None else f"{reference:.4g}"
        reason = (f"infeasible: {metric.name} {shown}{worse} than the unoptimized model's {base} "
                  f"(the guard allows {spec.max_drop:.1%})")
        return Verdict(constraint, False, drop, reason)

    def trial_value(self, measured: Any, result: dict[str, Any], baseline_attrs: dict[str, Any]) -> Any:
        """The unoptimized model's latency (trial 0's) over the trial's speed against it timed
        in the same process (`paired_speedup`, autotune.inference.serve.pair_with): its latency
        on the baseline's clock, so that machine drift between trial processes does not pick the
        best. The trial's own measured latency when it has no pairing."""
        base = baseline_attrs.get("latency_p50")
        speedup = result.get("paired_speedup")
        if not base or not speedup or not math.isfinite(speedup) or speedup <= 0:
            return measured
        return base / speedup

    def guard(self, user_attrs: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
        """The unoptimized model's metric, the bound it sets and --max-drop."""
        return {"reference": user_attrs.get("reference_metric"), "bound": user_attrs.get("target"),
                "max_drop": spec.get("max_drop")}
