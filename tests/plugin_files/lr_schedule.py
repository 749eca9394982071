"""Plugin: knob `doc_lr_schedule`, a learning-rate schedule sized from the run's budget.

Written from docs/plugins.md alone, as a proof that the docs suffice; the built-in
`lr_schedule` (plugins/training/lr_schedule.py) grew from it, so this one's names carry `doc_` to load
beside it.

- `none`: the optimizer's learning rate throughout (the baseline).
- `onecycle`: `torch.optim.lr_scheduler.OneCycleLR` with the optimizer's learning rate as
  `max_lr` (torch's defaults: 30% of the budget rising from max_lr/25, cosine annealing down to
  max_lr/25e4), momentum not cycled (so the knob changes the learning rate and nothing else).
- `cosine_warmup`: a linear warm-up over `doc_lr_warmup_fraction` of the budget to the optimizer's
  learning rate, then a cosine decay to 0.

For step and epoch budgets (`state.total_steps` at FIT_START) the schedule is a torch scheduler
built for exactly that many optimizer steps and stepped once per optimizer step (AFTER_STEP): the
learning rate of step k (from 0) is the scheduler's after k steps. For a seconds budget
(`state.total_steps` is None) the same curves are followed in closed form over `state.fraction`.
"""

import math

import torch

from autotune import Event, Knob, Param, hookimpl

ONECYCLE_PCT_START = 0.3  # torch's defaults, written out so the closed form matches them
ONECYCLE_DIV = 25.0
ONECYCLE_FINAL_DIV = 1e4


def cosine_warmup_factor(k: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate at step k (0-based) of `total` steps."""
    if k < warmup:
        return (k + 1) / warmup
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(k - warmup, span) / span))


def onecycle_factor_at(fraction: float) -> float:
    """OneCycle's (two-phase, cosine) multiplier of max_lr at a fraction 0..1 of the budget."""
    initial, final = 1.0 / ONECYCLE_DIV, 1.0 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < ONECYCLE_PCT_START:
        start, end, pct = initial, 1.0, fraction / ONECYCLE_PCT_START
    else:
        start, end, pct = 1.0, final, (fraction - ONECYCLE_PCT_START) / (1.0 - ONECYCLE_PCT_START)
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def cosine_warmup_factor_at(fraction: float, warmup: float) -> float:
    """cosine_warmup's multiplier at a fraction 0..1 of the budget."""
    fraction = min(max(fraction, 0.0), 1.0)
    if warmup > 0 and fraction < warmup:
        return max(fraction / warmup, 1e-3)
    return 0.5 * (1.0 + math.cos(math.pi * (fraction - warmup) / max(1.0 - warmup, 1e-12)))


class LRSchedule(Knob):
    name = "doc_lr_schedule"
    help = "learning-rate schedule over the budget: none, onecycle, cosine_warmup"
    kind = "statistical"
    after = ("learning_rate", "optimizer")  # the schedule scales the lr they set

    def params(self, hardware):
        return [
            Param("doc_lr_schedule", "categorical", choices=("none", "onecycle", "cosine_warmup")),
            Param("doc_lr_warmup_fraction", "float", low=0.0, high=0.2, valid=(0.0, 0.5),
                  when={"doc_lr_schedule": ("cosine_warmup",)},
                  help="share of the budget spent warming up (cosine_warmup)"),
        ]

    def baseline(self, hardware):
        return {"doc_lr_schedule": "none", "doc_lr_warmup_fraction": 0.1}

    def apply(self, settings, plan):
        kind = settings["doc_lr_schedule"]
        if kind == "none":
            return
        warmup_fraction = settings.get("doc_lr_warmup_fraction", 0.1)
        holder = {}

        def start(state):
            groups = state.optimizer.param_groups
            base = [group["lr"] for group in groups]
            holder["base"] = base
            total = state.total_steps
            if total is None:  # a seconds budget: follow the curve over state.fraction
                holder["scheduler"] = None
                set_from_fraction(state)
                state.notes["doc_lr_schedule"] = (f"{kind} over the seconds budget "
                                                  f"(peak lr {max(base):g})")
                return
            total = max(int(total), 1)
            if kind == "onecycle" and total >= 2:
                scheduler = torch.optim.lr_scheduler.OneCycleLR(
                    state.optimizer, max_lr=base, total_steps=total, pct_start=ONECYCLE_PCT_START,
                    div_factor=ONECYCLE_DIV, final_div_factor=ONECYCLE_FINAL_DIV,
                    anneal_strategy="cos", cycle_momentum=False,
                )
            else:  # cosine_warmup (and a one-step onecycle, which has no room for a cycle)
                warmup = max(1, round(warmup_fraction * total)) if warmup_fraction > 0 else 0
                holder["warmup_steps"] = warmup
                scheduler = torch.optim.lr_scheduler.LambdaLR(
                    state.optimizer, lambda k: cosine_warmup_factor(k, total, warmup))
            holder["scheduler"] = scheduler
            holder["total"] = total
            detail = f", warm-up {holder['warmup_steps']} steps" if "warmup_steps" in holder else ""
            state.notes["doc_lr_schedule"] = f"{kind} over {total} optimizer steps{detail} (peak lr {max(base):g})"

        def set_from_fraction(state):
            done = state.fraction or 0.0
            if kind == "onecycle":
                factor = onecycle_factor_at(done)
            else:
                factor = cosine_warmup_factor_at(done, warmup_fraction)
            for group, base in zip(state.optimizer.param_groups, holder["base"]):
                group["lr"] = base * factor

        def after_step(state, loss):
            scheduler = holder.get("scheduler")
            if scheduler is None:
                set_from_fraction(state)
            elif state.step < holder["total"]:  # never past the steps it was sized for
                scheduler.step()

        plan.on(Event.FIT_START, start)
        plan.on(Event.AFTER_STEP, after_step)
        plan.notes["doc_lr_schedule"] = kind  # replaced by the sized description at FIT_START


@hookimpl
def register_knobs(register):
    register(LRSchedule())
