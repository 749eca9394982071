"""Judged at the length you train: the answer's recipe checked at the user's run length.

A study's trials are short, and its target is what the baseline reaches in one: often a weak one,
reached first by a learning rate too hot for a long run, which then stops improving while the
baseline goes on (short-horizon bias: Wu et al., ICLR 2018; the best learning rate falls as runs
get longer, Bjorck et al., ICLR 2025). So a recipe that changes what is learned is trained once
at the run's length (StudySpec.run_length: --run-steps / --run-epochs, by default HORIZON times
the budget) beside the baseline trained as long. The baseline's value at the end sets a target
by the study's own rule (its final value less the usual slack), and the recipe holds when it
reaches that target, and sooner than the baseline did. One that never reaches it (it stalls
short of where the baseline ends) is not confirmed, whatever it won at the budget.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from autotune.launch.requests import ScriptRequest, TrainingRequest
from autotune.run.projection import measured_time
from autotune.statuses import RunStatus
from autotune.study.paired import log_name

if TYPE_CHECKING:
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher

# validations over a run-length run: they resolve each time to the target to about 1/EVALS of it
EVALS = 40


class Horizon:
    """The run-length check of one study: the baseline trained to the run's length once, then
    each recipe checked against the target its end sets."""

    def __init__(self, launcher: "TrialLauncher", events: "StudyEvents", baseline: dict[str, Any],
                 seed: int) -> None:
        self.launcher, self.events, self.baseline, self.seed = launcher, events, baseline, seed
        self._reference: dict[str, Any] | None = None

    @property
    def length(self) -> dict[str, Any]:
        return dict(self.launcher.context.spec.run_length)

    def _run(self, settings: dict[str, Any], target: float | None, log_name: str) -> tuple[str, dict[str, Any]]:
        launcher = self.launcher
        request = launcher.request(dict(settings), False, str(launcher.context.logs_dir / log_name))
        assert isinstance(request, (TrainingRequest, ScriptRequest))
        request.budget = self.length
        request.options = dataclasses.replace(request.options, seed=self.seed, target=target,
                                              stop_at_target=target is not None, evals_per_budget=EVALS)
        outcome = launcher.run(request)
        return outcome.status, outcome.result or {}

    def reference(self) -> dict[str, Any]:
        """The baseline at the run's length: its final value, the target it sets and the time it
        took to first reach that target (end to end, as confirmation times runs)."""
        if self._reference is None:
            self.events.emit("checking", f"run length: the baseline for {_length_text(self.length)}",
                             label="run length", run=1, of=1)
            status, result = self._run(self.baseline, None, "horizon-baseline.log")
            metric = self.launcher.context.metric
            final = result.get("metric_value")
            if status != RunStatus.OK or final is None:
                self._reference = {"error": f"the baseline's run-length run {status}"}
            else:
                target = metric.target_from(final, result.get("val_samples"))
                reached = next((p for p in result.get("curve", []) if metric.reached(p.get("value"), target)), None)
                self._reference = {"final": final, "target": target, "time": None if reached is None else
                                   reached["train_time"] + (result.get("setup_time") or 0.0),
                                   "curve": _curve(result)}
        return self._reference

    def check(self, settings: dict[str, Any], label: str) -> dict[str, Any]:
        """Whether the recipe `settings` holds at the run's length (see the module doc)."""
        reference = self.reference()
        check: dict[str, Any] = {"length": self.length, "length_text": _length_text(self.length),
                                 "baseline_final": reference.get("final"), "target": reference.get("target"),
                                 "baseline_time": reference.get("time"), "baseline_curve": reference.get("curve")}
        if "error" in reference or reference.get("time") is None:
            return {**check, "holds": None, "why": reference.get("error", "the baseline gave no time to its target")}
        self.events.emit("checking", f"run length: {label} for up to {check['length_text']}",
                         label="run length", run=1, of=1)
        status, result = self._run(settings, reference["target"], f"horizon-{log_name(label)}.log")
        time = measured_time(result) if status == RunStatus.OK else None
        check.update(time=time, final=result.get("metric_value"), curve=_curve(result), status=str(status))
        metric_name = self.launcher.context.metric.name
        if time is None:
            return {**check, "holds": False, "why": (
                f"trained {check['length_text']}, it ends at {metric_name} {_value(result.get('metric_value'))}, "
                f"short of the {_value(reference['target'])} the baseline reaches there: it wins the study's short "
                f"runs and then stops improving (short-horizon bias)" if status == RunStatus.OK else
                f"its run-length run {status}")}
        check["speedup"] = reference["time"] / time if time > 0 else None
        if not check["speedup"] or check["speedup"] <= 1.0:
            return {**check, "holds": False, "why": (
                f"trained {check['length_text']}, it reaches the baseline's {metric_name} "
                f"{_value(reference['target'])} no sooner than the baseline ({check['speedup'] or 0:.2f}x)")}
        return {**check, "holds": True, "why": None}


def _curve(result: dict[str, Any]) -> list[list[float]]:
    """A run's validations as [seconds trained, value] pairs."""
    return [[p["train_time"], p["value"]] for p in result.get("curve", []) if p.get("value") is not None]


def _length_text(length: dict[str, Any]) -> str:
    (unit, value), = length.items()
    return f"{value:g} {unit}"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
