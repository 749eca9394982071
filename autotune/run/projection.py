"""Time to target as measured factors (torch-free): steps x the steady time per step, plus the
one-time costs measured apart.

A short trial's wall-clock time to target mixes what a configuration costs on every step with
what it costs once (building the model, the first steps' kernel set-up or compilation, starting
DataLoader workers) and with whatever the machine's load did meanwhile. Measured apart, the
configuration's steady cost is the median step (its data wait included: a load spike moves a few
steps, not the median), and the projection for a run `scale` times as long as the study's
budget multiplies the recurring part only, as the goodput view of Pollux (OSDI '21) does:

    projected = setup + warm-up excess + scale * (steps * median step + epoch starts)

`scale` is the user's real run length over the study's budget (`--run-epochs`): one-time costs
weigh less in a long run than in a trial, so the study ranks configurations as the real run
would. Confirmation measures the real time to target end to end, which checks the projection.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepClock:
    """What one run's steps cost, split into the warm-up, the steady steps and epoch starts."""

    warmup_steps: int
    scale: float = 1.0
    setup: float = 0.0  # model build, knob transforms, optimizer and loaders
    warmup: float = 0.0  # the first `warmup_steps` steps, whole
    warmup_count: int = 0
    epoch_starts: float = 0.0  # each epoch's iterator start and end (worker start included)
    steady: list[float] = field(default_factory=list)  # each later step, its data wait included

    def step(self, seconds: float) -> None:
        if self.warmup_count < self.warmup_steps:
            self.warmup += seconds
            self.warmup_count += 1
        else:
            self.steady.append(seconds)

    def epoch_boundary(self, seconds: float) -> None:
        self.epoch_starts += seconds

    @property
    def step_time(self) -> float | None:
        """The steady time per step: the median over steps after the warm-up (their mean while
        there are none)."""
        if self.steady:
            return statistics.median(self.steady)
        if self.warmup_count:
            return self.warmup / self.warmup_count
        return None

    def one_time(self) -> dict[str, float]:
        """The costs paid once: set-up, and how much longer the warm-up steps took than steady
        ones (first-iteration kernel selection, compilation, allocator growth)."""
        per_step = self.step_time or 0.0
        return {"setup": self.setup, "warmup": max(0.0, self.warmup - self.warmup_count * per_step)}

    def projected(self, steps: int) -> float:
        """Projected seconds to have trained `steps` steps in a run `scale` times the budget."""
        per_step = self.step_time or 0.0
        return sum(self.one_time().values()) + self.scale * (steps * per_step + self.epoch_starts)


def measured_time(result: dict[str, Any]) -> float | None:
    """The real time to target of a run, end to end: set-up and every training second until
    the first validation that reached it (validation itself left out: it is the measurement)."""
    reached = result.get("time_to_target")
    return None if reached is None else reached + (result.get("setup_time") or 0.0)


def time_before_missing(result: dict[str, Any]) -> float | None:
    """The real time of a run that trained its whole budget without reaching the target, end to
    end as in measured_time: a lower bound on its time to target. None when it gave no time."""
    trained = result.get("train_time")
    return None if trained is None else trained + (result.get("setup_time") or 0.0)
