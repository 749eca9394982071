"""lr_schedule: how the learning rate moves over the run's budget.

- `constant`: the optimizer's learning rate throughout (the baseline: the run is unchanged).
- `onecycle`: torch's `OneCycleLR` with the optimizer's rate as `max_lr` and torch's defaults
  (30% of the budget rising from max_lr/25, then a cosine down to max_lr/25e4); the momentum is
  not cycled, so the knob changes the learning rate and nothing else.
- `cosine`: a linear warm-up over `lr_warmup_fraction` of the budget to the optimizer's rate,
  then a cosine decay towards 0.
- `linear`: the same warm-up, then a linear decay towards 0.

The rate the searched `learning_rate` sets is the schedule's peak. For step and epoch budgets the
schedule is sized from `state.total_steps`: optimizer step k (from 0) of T runs at
`lr_at_step` (for onecycle, exactly what `OneCycleLR(total_steps=T)` gives after k steps). For
a seconds budget there is no step count: the same curves are followed over `state.fraction`, the
share of the budget spent when each step starts (`lr_at_fraction`). Pure arithmetic: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from autotune import Event, Knob, Param, TrainingPlan, Unsupported, hookimpl

SCHEDULES = ("constant", "onecycle", "cosine", "linear")
WARMED = ("cosine", "linear")  # the schedules that take lr_warmup_fraction
DEFAULT_WARMUP = 0.05
# torch's OneCycleLR defaults, written out so the closed form is theirs
ONECYCLE_PCT_START = 0.3
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4
# A seconds budget's warm-up starts at fraction 0, where the ramp is 0: a step at rate 0 would be
# a step wasted, so the ramp starts here instead.
SECONDS_WARMUP_FLOOR = 1e-3


def _anneal_cos(start: float, end: float, pct: float) -> float:
    """torch's OneCycleLR._annealing_cos, term for term (so the floats match)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def onecycle_lr(peak: float, k: int, total: int) -> float:
    """The rate of step k (0-based) of `total` under OneCycleLR(max_lr=peak, total_steps=total)."""
    initial = peak / ONECYCLE_DIV
    final = initial / ONECYCLE_FINAL_DIV
    rise_end = float(ONECYCLE_PCT_START * total) - 1
    if k <= rise_end:
        return _anneal_cos(initial, peak, k / rise_end)
    return _anneal_cos(peak, final, (k - rise_end) / (total - 1 - rise_end))


def warmup_steps(warmup_fraction: float, total: int) -> int:
    """Optimizer steps of warm-up: the fraction of `total`, rounded, at least 1 when asked for."""
    return max(1, round(warmup_fraction * total)) if warmup_fraction > 0 else 0


def decay_factor(kind: str, done: float) -> float:
    """The cosine or linear decay's multiplier after `done` (0..1) of the decay phase."""
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return 1.0 - done


def lr_at_step(kind: str, peak: float, k: int, total: int, warmup: int) -> float:
    """The rate of optimizer step k (0-based) of `total`, `warmup` of them warming up."""
    if kind == "onecycle":
        return onecycle_lr(peak, k, total)
    if k < warmup:
        return peak * ((k + 1) / warmup)  # step warmup-1 runs at the peak exactly; step 0 is not wasted
    return peak * decay_factor(kind, (k - warmup) / max(total - warmup, 1))


def lr_at_fraction(kind: str, peak: float, fraction: float, warmup: float) -> float:
    """The rate at `fraction` (0..1) of a seconds budget, `warmup` (0..1) of it warming up."""
    fraction = min(max(fraction, 0.0), 1.0)
    if kind == "onecycle":
        initial = peak / ONECYCLE_DIV
        if fraction < ONECYCLE_PCT_START:
            return _anneal_cos(initial, peak, fraction / ONECYCLE_PCT_START)
        final = initial / ONECYCLE_FINAL_DIV
        return _anneal_cos(peak, final, (fraction - ONECYCLE_PCT_START) / (1.0 - ONECYCLE_PCT_START))
    if fraction < warmup:
        return peak * max(fraction / warmup, SECONDS_WARMUP_FLOOR)
    return peak * decay_factor(kind, (fraction - warmup) / (1.0 - warmup))


@dataclass
class _Schedule:
    """One run's schedule: sized at FIT_START; after each step, sets the rate of the next one."""

    kind: str
    warmup_fraction: float
    mode: str = "off"  # "steps" (sized from total_steps), "seconds" (over state.fraction) or "off"
    peaks: list[float] = field(default_factory=list)
    total: int = 0
    warmup: int = 0
    description: str = ""
    ran: list[float] = field(default_factory=list)  # the rates the last step ran at

    def start(self, state: Any) -> None:
        self.peaks = [group["lr"] for group in state.optimizer.param_groups]
        peak = f"peak lr {max(self.peaks):g}"
        warm = self.kind in WARMED
        if state.total_steps is not None:
            self.total = int(state.total_steps)
            if self.kind == "onecycle" and self.total < 2:
                # OneCycleLR would run the only step at its floor, max_lr/25e4
                state.notes["lr_schedule"] = f"constant: 1 optimizer step leaves no room for onecycle ({peak})"
                return
            self.mode = "steps"
            self.warmup = warmup_steps(self.warmup_fraction, self.total) if warm else 0
            detail = f", warm-up {self.warmup} steps" if warm else ""
            self.description = f"{self.kind} over {self.total} optimizer steps{detail}, {peak}"
        elif not state.budget_seconds:
            # a loop of unknown length (autotune.apply without total_steps): refuse, don't pretend
            raise Unsupported(
                f"lr_schedule {self.kind} is sized from the run's length, which this loop does not give: "
                "pass autotune.apply(..., total_steps=N)"
            )
        else:
            self.mode = "seconds"
            detail = f", warm-up {self.warmup_fraction:.0%} of it" if warm else ""
            self.description = f"{self.kind} over the {state.budget_seconds:g} s budget{detail}, {peak}"
        state.notes["lr_schedule"] = self.description
        self._set(state)

    def after_step(self, state: Any, loss: Any = None) -> None:
        if self.mode == "off":
            return
        self.ran = [group["lr"] for group in state.optimizer.param_groups]
        if self.mode == "steps" and state.step >= self.total:
            return  # never past the steps it was sized for: the run is over
        self._set(state)

    def end(self, state: Any) -> None:
        if self.ran:
            state.notes["lr_schedule"] = f"{self.description}, last step at lr {max(self.ran):.3g}"

    def _set(self, state: Any) -> None:
        if self.mode == "steps":
            rates = [lr_at_step(self.kind, p, state.step, self.total, self.warmup) for p in self.peaks]
        else:
            rates = [lr_at_fraction(self.kind, p, state.fraction, self.warmup_fraction) for p in self.peaks]
        for group, rate in zip(state.optimizer.param_groups, rates):
            group["lr"] = rate


class LRSchedule(Knob):
    name = "lr_schedule"
    help = "learning-rate schedule over the budget: constant, onecycle, cosine or linear (with warm-up)"
    kind = "statistical"
    after = ("learning_rate", "optimizer")  # the schedule's peak is the rate they set

    def params(self, hardware):
        return [
            Param("lr_schedule", "categorical", choices=SCHEDULES),
            Param("lr_warmup_fraction", "float", low=0.0, high=0.3, valid=(0.0, 0.5),
                  when={"lr_schedule": WARMED}, help="share of the budget spent warming up (cosine, linear)"),
        ]

    def baseline(self, hardware):
        return {"lr_schedule": "constant", "lr_warmup_fraction": DEFAULT_WARMUP}

    def apply(self, settings, plan: TrainingPlan):
        kind = settings["lr_schedule"]
        if kind == "constant":
            return
        warmup = settings.get("lr_warmup_fraction", DEFAULT_WARMUP) if kind in WARMED else 0.0
        schedule = _Schedule(kind, warmup)
        plan.on(Event.FIT_START, schedule.start)
        plan.on(Event.AFTER_STEP, schedule.after_step)
        plan.on(Event.FIT_END, schedule.end)
        plan.notes["lr_schedule"] = kind  # replaced by the sized description at FIT_START


@hookimpl
def register_knobs(register):
    register(LRSchedule())
