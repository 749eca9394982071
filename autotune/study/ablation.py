"""Why it is faster: the confirmed speedup decomposed along a path from the baseline to the best,
one knob at a time, each step measured ("batch_size 64 -> 128: 1.4x, optimizer sgd -> adam:
1.3x ...").

The path changes the knobs in the order they are applied (registry order), each with its own
sub-settings (the optimizer with its betas). Every configuration strictly between the baseline
and the best is trained once with a fresh seed, like a confirmation run; the two ends are the
confirmation's medians. A step's ratio is the time before it over the time after it, so the
ratios multiply to the baseline's time over the best's. Knobs interact (a learning rate means
something else with another optimizer), so a step's ratio is that knob's effect on this path,
not alone.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial

from autotune.run.projection import measured_time
from autotune.run.trial_process import launch
from autotune.settings import settings_index
from autotune.statuses import RunStatus

if TYPE_CHECKING:
    from autotune.study.runner import StudyRunner


def knob_steps(runner: "StudyRunner", start: dict[str, Any], end: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The knobs whose settings differ between `start` and `end`, in apply order, each with the
    settings it takes from `end`."""
    index = settings_index(runner.p.registry, runner.p.hardware)
    steps: dict[str, dict[str, Any]] = {}
    for key in sorted(set(start) | set(end), key=lambda k: _order(runner, index, k)):
        if key in end and start.get(key) != end[key]:
            knob = index[key][0].name if key in index else key
            steps.setdefault(knob, {})[key] = end[key]
    return list(steps.items())


def _order(runner: "StudyRunner", index: dict[str, Any], key: str) -> tuple[int, str]:
    names = list(runner.p.registry.knobs)
    knob = index[key][0].name if key in index else key
    return (names.index(knob) if knob in names else len(names), key)


def ablation_path(runner: "StudyRunner", best: FrozenTrial, baseline: FrozenTrial, confirmation: dict[str, Any]) -> dict[str, Any] | None:
    """Measure the path from the baseline to the best; None when there is nothing to split (one
    knob changed, or the confirmation gave no time for either end)."""
    objective, spec = runner.objective, runner.spec
    start_value, end_value = confirmation.get("baseline_value_median"), confirmation.get("best_value_median")
    if objective.multi or not start_value or not end_value:
        return None
    start, end = baseline.user_attrs["settings"], best.user_attrs["settings"]
    steps = knob_steps(runner, start, end)
    if len(steps) < 2:
        return None
    current, previous, path = dict(start), start_value, []
    for i, (knob, changes) in enumerate(steps):
        current.update(changes)
        if i == len(steps) - 1:
            value, status = end_value, RunStatus.OK.value
        else:
            runner.events.emit("explaining", f"why it is faster: step {i + 1}/{len(steps) - 1} ({knob})",
                               step=i + 1, of=len(steps) - 1, knob=knob)
            request = runner.request(dict(current), False, str(runner.logs_dir / f"ablation-{i}.log"))
            request.options = dataclasses.replace(
                request.options, seed=(spec.seed or 0) + 2000 + i, target=runner.target,
                stop_at_target=objective.stop_at_target,
            )
            with runner.lease() as gpus:
                runner.use_gpus(request, gpus)
                outcome = launch(request)
            result = outcome.result or {}
            status = outcome.status
            value = None
            if status == RunStatus.OK:
                value = measured_time(result) if objective.name == "time-to-accuracy" else objective.values(result)
        ratio = objective.speedup(value, previous) if value and previous else None
        path.append({"knob": knob, "from": {k: start.get(k) for k in changes}, "to": changes, "value": value,
                     "status": status, "ratio": ratio})
        if value:
            previous = value
    return {"steps": path, "runs_per_step": 1, "ends": "confirmation medians"}
