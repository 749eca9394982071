"""Time to target as measured factors (torch-free): steps x the steady time per step, plus the
one-time costs measured apart.

A short trial's wall-clock time to target mixes what a configuration costs on every step with
what it costs once (building the model, the first steps' kernel set-up or compilation, starting
DataLoader workers) and with whatever the machine's load did meanwhile. Measured apart, the
configuration's steady cost is the median step (its data wait included: a load spike moves a few
steps, not the median), and the projection for a run `scale` times as long as the study's
budget multiplies the recurring part only, as the goodput view of Pollux (OSDI '21) does:

    projected = setup + scale * epoch starts
                + the sum over stretches of (warm-up excess + scale * steps * median step)

A stretch is the steps between two validations, and its median step is its own, fixed once the
validation that ends it has measured it. The projection at a validation is the seconds trained
so far: it must only grow, since a pruned trial's last one is read as a lower bound on its time
to target (docs/objective.md). One median over every step so far would not: early steady steps
are often slower (caches, the allocator, a busy machine), and as faster ones pile up the median
falls and takes the seconds already trained down with it.

`scale` is the user's real run length over the study's budget (`--run-epochs`): one-time costs
weigh less in a long run than in a trial, so the study ranks configurations as the real run
would. Confirmation measures the real time to target end to end, which checks the projection.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

# A stretch with fewer steady steps than this is counted at the median of the last this many:
# one step is no median, and validations may come every step or two on a small data set.
MEDIAN_OF = 5


@dataclass
class StepClock:
    """What one run's steps cost, split into the warm-up, the steady steps and epoch starts; and
    the projection of the steps trained so far, stretch by stretch."""

    warmup_steps: int
    scale: float = 1.0
    setup: float = 0.0  # model build, knob transforms, optimizer and loaders
    warmup: float = 0.0  # the first `warmup_steps` steps, whole
    warmup_count: int = 0
    epoch_starts: float = 0.0  # each epoch's iterator start and end (worker start included)
    steady: list[float] = field(default_factory=list)  # each later step, its data wait included
    # the stretches already projected (fixed once measured): their projected seconds, and how
    # many steps, warm-up steps, warm-up seconds and steady steps they hold
    trained: float = 0.0
    counted: int = 0
    counted_warmup: int = 0
    counted_warmup_seconds: float = 0.0
    counted_steady: int = 0

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
        """The steady time per step over the whole run: the median over steps after the warm-up
        (their mean while there are none). What reports show as the steady step."""
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
        """Projected seconds to have trained `steps` steps in a run `scale` times the budget: the
        stretches projected before, and the steps since the last call as one more stretch at its
        own median step. Never less than at an earlier call: call it at each validation."""
        stretch = steps - self.counted
        warmup_steps = self.warmup_count - self.counted_warmup
        warmup_seconds = self.warmup - self.counted_warmup_seconds
        steady = len(self.steady) - self.counted_steady
        per_step = self._stretch_step(steady, warmup_steps, warmup_seconds)
        if stretch > 0 and per_step is not None:
            # the warm-up steps in it are paid once, and no less than steady steps would cost
            excess = max(0.0, warmup_seconds - warmup_steps * per_step)
            self.trained += excess + self.scale * stretch * per_step
            self.counted, self.counted_warmup, self.counted_steady = steps, self.warmup_count, len(self.steady)
            self.counted_warmup_seconds = self.warmup
        return self.setup + self.trained + self.scale * self.epoch_starts

    def _stretch_step(self, steady: int, warmup_steps: int, warmup_seconds: float) -> float | None:
        """The median step of a stretch that holds `steady` of the last steady steps (at least
        the last MEDIAN_OF); in a stretch still in the warm-up, its warm-up steps' mean."""
        if steady and self.steady:
            return statistics.median(self.steady[-max(steady, MEDIAN_OF):])
        if warmup_steps:
            return warmup_seconds / warmup_steps
        return self.step_time


def warmup_steps(asked: int, total_steps: int | None) -> int:
    """How many first steps a run of `total_steps` (None: not known) leaves out of its steady
    ones: `asked`, or a quarter of a run too short to spare twice that many."""
    if total_steps is not None and total_steps <= 2 * asked:
        return total_steps // 4
    return asked


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
