"""Two configurations of the same recipe timed against each other over the run's length.

A systems knob (Knob.kind "systems": threads, workers, precision, channels_last, compile ...)
changes how fast the steps run, not what is learned: its whole effect on a run is what it costs
once and what it costs per step, which a few dozen steps measure to a percent, where time to a
target measures it only to the run-to-run noise of convergence. So a systems setting is judged
here, never by time to target: the reference and the candidate each train STEPS steps in their
own process, in PAIRS pairs that share a seed and alternate which runs first (a machine that
slows down over the pairs slows both sides alike), and each pair gives the ratio of what the two
would take to train the run's length (`run_cost`): their one-time costs (set-up, the warm-up's
excess: compilation, the first batches of DataLoader workers) plus that many times their mean
step after the warm-up, epoch starts and data waits included. A median step would leave out
exactly what some systems knobs cost (workers=1 measured 1.26x faster by its median step on
digits, and 0.77x end to end). The candidate is faster when every pair says so and the median by
MIN_GAIN.

The same runs check that the candidate learns what the reference does: each run validates once
at its end, and the gap between a pair's two values (same seed) must lie within what reseeding
moves the reference's own value (the spread of its values over the pairs), as --keep-recipe's
curve check does (autotune.study.recipe).
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autotune.launch.requests import ScriptRequest, TrainingRequest
from autotune.statuses import RunStatus

if TYPE_CHECKING:
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher

STEPS = 30
PAIRS = 3
# Separate processes' steady steps drift by a few percent (the lightning example's 0.5 ms steps:
# a threads change kept at 1.03x by its 3 pairs measured 0.98x in the next 3): less is no gain
MIN_GAIN = 0.05
# two values of the metric this close are the same numbers, whatever the seeds' spread
SAME = 1e-6


@dataclass
class StepComparison:
    """What PAIRS pairs of short runs said about a candidate against a reference."""

    ratios: list[float] = field(default_factory=list)  # the reference's run_cost over the candidate's
    gaps: list[float] = field(default_factory=list)  # |metric| between a pair's two runs
    reference_values: list[float] = field(default_factory=list)  # the reference's metric, each seed
    failed: str | None = None  # why a run gave no step time (the candidate does not run here)
    steps: int | None = None  # the run's length in steps, which the ratios are over

    @property
    def median(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def faster(self) -> bool:
        """Every pair faster and the median by MIN_GAIN: the candidate's steps are shorter."""
        return (self.failed is None and len(self.ratios) == PAIRS and min(self.ratios) > 1.0
                and statistics.median(self.ratios) >= 1.0 + MIN_GAIN)

    @property
    def noise(self) -> float:
        """What reseeding moves the reference's validation value by."""
        values = self.reference_values
        return max(values) - min(values) if len(values) >= 2 else 0.0

    @property
    def same_learning(self) -> bool:
        """The candidate's values lie within the reference's own seed-to-seed spread."""
        return not self.gaps or max(self.gaps) <= max(self.noise, SAME * max(map(abs, self.reference_values)))

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.median, "ratios": self.ratios, "interval": [min(self.ratios), max(self.ratios)]
                if self.ratios else None, "faster": self.faster, "same_learning": self.same_learning,
                "max_gap": max(self.gaps) if self.gaps else None, "noise": self.noise, "failed": self.failed,
                "steps": self.steps,
                "how": f"paired step time over the run's length ({self.steps or '?'} steps: one-time costs and the "
                       f"mean step), {PAIRS} pairs of {STEPS} steps"}


def run_cost(result: dict[str, Any], steps: float) -> float:
    """Seconds the run in `result` would take to train `steps` steps: set-up and the warm-up's
    excess once, and `steps` times its mean step after the warm-up (epoch starts and data waits
    included; validation left out)."""
    once = result.get("one_time") or {}
    warmup = once.get("warmup") or 0.0
    train, steps_done = result.get("train_time"), result.get("steps")
    per_step = max(0.0, train - warmup) / steps_done if train and steps_done else result.get("step_time") or 0.0
    return (once.get("setup") or result.get("setup_time") or 0.0) + warmup + steps * per_step


def run_steps(length: dict[str, float], result: dict[str, Any]) -> float:
    """The run's length (StudySpec.run_length) in steps of the run in `result`."""
    (unit, value), = length.items()
    if unit == "steps":
        return float(value)
    steps, epochs = result.get("steps") or 0, result.get("epochs") or 0.0
    if unit == "epochs" and steps and epochs:
        return value * steps / epochs
    per_step = (result.get("train_time") or 0.0) / max(1, steps)
    return value / per_step if unit == "seconds" and per_step > 0 else float(STEPS)


def log_name(label: str) -> str:
    """A file name from a label ("systems stage: precision fp32 -> bf16"): systems-stage-precision-fp32-bf16."""
    return re.sub(r"[^A-Za-z0-9._]+", "-", label).strip("-")


def step_run(launcher: "TrialLauncher", settings: dict[str, Any], seed: int,
             log_file: str) -> tuple[str, dict[str, Any], str | None]:
    """Train `settings` STEPS steps with `seed`, validating once at the end: the run's status,
    result and error."""
    request = launcher.request(dict(settings), False, str(launcher.context.logs_dir / log_file))
    assert isinstance(request, (TrainingRequest, ScriptRequest))
    request.budget = {"steps": STEPS}
    request.options = dataclasses.replace(request.options, seed=seed, target=None, stop_at_target=False,
                                          eval_every_steps=STEPS, evals_per_budget=1)
    outcome = launcher.run(request)
    return outcome.status, outcome.result or {}, outcome.error


def compare_step_times(launcher: "TrialLauncher", events: "StudyEvents", reference: dict[str, Any],
                       candidate: dict[str, Any], label: str, seed: int) -> StepComparison:
    """Time `candidate` against `reference` in PAIRS alternating pairs (see the module doc)."""
    comparison = StepComparison()
    for i in range(PAIRS):
        events.emit("checking", f"{label}: timing pair {i + 1}/{PAIRS}", label=label, run=i + 1, of=PAIRS)
        sides = [("reference", reference), ("candidate", candidate)]
        measured: dict[str, dict[str, Any]] = {}
        for side, settings in (sides if i % 2 == 0 else sides[::-1]):
            status, result, error = step_run(launcher, settings, seed + i, f"{log_name(label)}-{side}-{i}.log")
            if status != RunStatus.OK or not result.get("step_time"):
                comparison.failed = f"{side} {status}: {error or 'no step time'}"
                return comparison
            measured[side] = result
        ref, cand = measured["reference"], measured["candidate"]
        steps = run_steps(launcher.context.spec.run_length, ref)
        comparison.steps = round(steps)
        cost = run_cost(cand, steps)
        if cost <= 0.0:
            comparison.failed = "candidate: no time measured"
            return comparison
        comparison.ratios.append(run_cost(ref, steps) / cost)
        if ref.get("metric_value") is not None and cand.get("metric_value") is not None:
            comparison.reference_values.append(ref["metric_value"])
            comparison.gaps.append(abs(ref["metric_value"] - cand["metric_value"]))
    return comparison
