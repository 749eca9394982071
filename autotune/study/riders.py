"""No riders: each setting of the answer that differs from the baseline must earn its place.

The best trial of a search carries every setting it was sampled with, and in a dozen trials many
of them decided nothing: a setting that rode along with a good learning rate (DataLoader workers
that slow each step, weight masking that makes nothing faster). Before confirmation each knob of
the best whose settings differ from the baseline's is reverted to the baseline's, once, paired
with the current answer: a systems knob by paired step time (autotune.study.paired), a
statistical one by time to the target, both with the same seed. A knob whose reversal is not
slower beyond the noise is dropped, and the next reversal starts from what is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autotune.statuses import RunStatus
from autotune.study.ablation import knob_steps
from autotune.study.paired import compare_step_times
from autotune.study.reruns import real_value, rerun
from autotune.study.systems import refit_threads

if TYPE_CHECKING:
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher

# A reversal slower than the answer by less than the margin is within the noise of one pair of
# times to a target: the setting is not shown to matter. The margin is the baseline's step noise
# (the pruning margin, autotune.study.trial_watch.noise_margin) within these bounds: a pair shares
# its seed, and over a run of hundreds of steps the spread of single steps averages out, so what
# is left is validation granularity (a twelfth of the budget) and drift. A margin as wide as a
# busy machine's step spread (40%) would drop settings worth 1.3x.
MIN_MARGIN, MAX_MARGIN = 0.05, 0.15


def reverted(settings: dict[str, Any], baseline: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`settings` with the keys of `changes` back at the baseline's (or gone, where the
    baseline has none: a sub-setting of another optimizer)."""
    out = {k: v for k, v in settings.items() if k not in changes}
    out.update({k: baseline[k] for k in changes if k in baseline})
    return out


def drop_riders(launcher: "TrialLauncher", events: "StudyEvents", settings: dict[str, Any],
                baseline: dict[str, Any], margin: float, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`settings` without the knobs whose reversal is not slower, and a row for each reversal."""
    context = launcher.context
    current, rows = dict(settings), []
    # threads the search fitted rather than searched follow the workers: no knob of their own
    steps = [(k, c) for k, c in knob_steps(context, baseline, settings) if k != "threads" or "threads" in
             context.searched]
    for i, (knob, changes) in enumerate(steps):
        candidate = refit_threads(launcher, reverted(current, baseline, changes), context.searched)
        systems = knob in context.registry.knobs and context.registry.knobs[knob].kind == "systems"
        if systems:
            row = _systems_reversal(launcher, events, current, candidate, knob, seed + i)
        else:
            row = _recipe_reversal(launcher, events, current, candidate, knob, seed + i,
                                   min(MAX_MARGIN, max(margin, MIN_MARGIN)))
        row.update(knob=knob, settings={k: current.get(k) for k in changes},
                   baseline={k: baseline.get(k) for k in changes}, kind="systems" if systems else "statistical")
        rows.append(row)
        if row["dropped"]:
            current = candidate
    return current, rows


def _systems_reversal(launcher: "TrialLauncher", events: "StudyEvents", current: dict[str, Any],
                      candidate: dict[str, Any], knob: str, seed: int) -> dict[str, Any]:
    """A systems knob stays when the answer's steps are faster than with it reverted."""
    comparison = compare_step_times(launcher, events, candidate, current, f"rider check: {knob}", seed)
    # a reversal that does not run here (the reference side failed) is no reason to drop it
    keep = comparison.faster or (comparison.failed or "").startswith("reference")
    return {"dropped": not keep, "by": "step time", "ratio": comparison.median, "comparison": comparison.to_dict(),
            "why": None if keep else "its steps are not faster than with the baseline's"}


def _recipe_reversal(launcher: "TrialLauncher", events: "StudyEvents", current: dict[str, Any],
                     candidate: dict[str, Any], knob: str, seed: int, margin: float) -> dict[str, Any]:
    """A statistical knob stays when the answer reaches the target sooner than with it
    reverted by more than `margin` (or the reverted one misses the target)."""
    objective = launcher.context.objective
    times = {}
    for side, settings in (("answer", current), ("reverted", candidate)):
        events.emit("checking", f"rider check: {knob} ({side})", label=f"rider check: {knob}", run=1, of=1)
        outcome, result = rerun(launcher, settings, seed, f"rider-{knob}-{side}.log")
        times[side] = real_value(objective, outcome, result) if outcome.status == RunStatus.OK else None
    answer, back = times["answer"], times["reverted"]
    if answer is None:  # the answer itself missed with this seed: nothing to judge by, keep it
        return {"dropped": False, "by": "time to target", "ratio": None, "why": "the answer missed the target"}
    if back is None:
        return {"dropped": False, "by": "time to target", "ratio": None, "why": None}
    ratio = objective.speedup(answer, back)
    keep = ratio > 1.0 + margin
    return {"dropped": not keep, "by": "time to target", "ratio": ratio, "margin": margin,
            "why": None if keep else f"reverted, it reaches the target no later (within {margin:.0%})"}
