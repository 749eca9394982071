"""Why it is faster: the confirmed speedup decomposed along a path from the baseline to the best,
one knob at a time, each step measured ("batch_size 64 -> 128: 1.4x, optimizer sgd -> adam:
1.3x ...").

The path changes the knobs in the order they are applied (registry order), each with its own
sub-settings (the optimizer with its betas). Every configuration strictly between the baseline
and the best is trained once with a fresh seed, like a confirmation run; the two ends are the
confirmation's medians. A step's ratio is the time before it over the time after it, so the
ratios multiply to the baseline's time over the best's. A configuration in between that trains
its whole budget without reaching the target (a smaller batch at the baseline's learning rate
sees fewer samples in a steps budget) took at least that long: the steps on either side of it
are then bounds ("at most 0.8x", "at least 9.7x"), not dropped. Knobs interact (a learning rate means
something else with another optimizer), so a step's ratio is that knob's effect on this path,
not alone. Threads the study fitted rather than searched (autotune.study.launcher.TrialLauncher.fit_threads)
follow the step that changes what they were fitted to (the DataLoader workers), as they did in
the search: a step of its own would measure an oversubscribed configuration no trial ran.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial

from autotune.settings import settings_index
from autotune.statuses import RunStatus
from autotune.study.reruns import missed_time, real_value, rerun

if TYPE_CHECKING:
    from autotune.study.context import TrialContext
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher


def knob_steps(context: "TrialContext", start: dict[str, Any],
               end: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The knobs whose settings differ between `start` and `end`, in apply order, each with the
    settings it takes from `end` (None for one of `start`'s that `end` has not)."""
    index = settings_index(context.registry, context.hardware)
    names = list(context.registry.knobs)

    def knob_of(key: str) -> str:
        return index[key][0].name if key in index else key

    def order(key: str) -> tuple[int, str]:
        knob = knob_of(key)
        return (names.index(knob) if knob in names else len(names), key)

    steps: dict[str, dict[str, Any]] = {}
    for key in sorted(set(start) | set(end), key=order):
        if key in end and start.get(key) != end[key]:
            steps.setdefault(knob_of(key), {})[key] = end[key]
        elif key not in end and start.get(key) is not None:
            # a sub-setting `end` has not (sgd's momentum, once adamw is chosen): the step drops it
            steps.setdefault(knob_of(key), {})[key] = None
    return list(steps.items())


def path_configurations(
    launcher: "TrialLauncher", start: dict[str, Any], end: dict[str, Any], fitted_threads: bool,
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The path from `start` to `end`: each step's knob, its changes and the whole configuration
    after it. With `fitted_threads`, threads are no step of their own but refitted after each."""
    steps = [(k, c) for k, c in knob_steps(launcher.context, start, end)
             if not (fitted_threads and k == "threads")]
    current, path = dict(start), []
    for knob, changes in steps:
        current = {k: v for k, v in {**current, **changes}.items() if k in end or k not in changes}
        if fitted_threads:
            current = launcher.fit_threads({k: v for k, v in current.items() if k != "threads"})
        path.append((knob, changes, current))
    return path


def ablation_path(launcher: "TrialLauncher", events: "StudyEvents", end: dict[str, Any], baseline: FrozenTrial,
                  confirmation: dict[str, Any], searched_threads: bool = False) -> dict[str, Any] | None:
    """Measure the path from the baseline to the best; None when there is nothing to split (one
    knob changed, or the confirmation gave no time for either end)."""
    objective, spec = launcher.context.objective, launcher.context.spec
    start_value, end_value = confirmation.get("baseline_value_median"), confirmation.get("best_value_median")
    if objective.multi or not start_value or not end_value:
        return None
    start = baseline.user_attrs["settings"]
    steps = path_configurations(launcher, start, end, "threads" in end and not searched_threads)
    if len(steps) < 2:
        return None
    measured: list[tuple[float | None, bool, str]] = []
    for i, (knob, changes, current) in enumerate(steps):
        if i == len(steps) - 1:
            measured.append((end_value, False, RunStatus.OK.value))
            continue
        events.emit("explaining", f"why it is faster: step {i + 1}/{len(steps) - 1} ({knob})",
                    step=i + 1, of=len(steps) - 1, knob=knob)
        outcome, result = rerun(launcher, current, (spec.seed or 0) + 2000 + i, f"ablation-{i}.log")
        value, missed = real_value(objective, outcome, result), False
        if value is None:
            lower = missed_time(objective, outcome, result)  # its time to the target is at least that
            value, missed = lower, lower is not None
        measured.append((value, missed, outcome.status))
    path = [
        {"knob": knob, "from": {k: start.get(k) for k in changes}, "to": changes, "value": value,
         "status": status, **({"missed": True} if missed else {}), **step_ratio(objective, before, (value, missed))}
        for (knob, changes, _), (value, missed, status), before
        in zip(steps, measured, [(start_value, False), *((v, m) for v, m, _ in measured)])
    ]
    return {"steps": path, "runs_per_step": 1, "ends": "confirmation medians"}


def step_ratio(objective: Any, before: tuple[float | None, bool], after: tuple[float | None, bool]) -> dict[str, Any]:
    """A step's speedup from the (time, is a lower bound) before it to the one after it. A time
    that is only a lower bound (a run that missed the target) bounds the ratio: from it, the
    ratio is at least the one computed; to it, at most. Both bounds, or a missing time: none."""
    (previous, previous_bound), (value, bound) = before, after
    if not previous or not value or (previous_bound and bound):
        return {"ratio": None}
    ratio = objective.speedup(value, previous)
    if previous_bound:
        return {"ratio": ratio, "bound": "at least"}
    if bound:
        return {"ratio": ratio, "bound": "at most"}
    return {"ratio": ratio}
