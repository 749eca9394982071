"""The search's second stage: the systems knobs fitted to the chosen recipe by paired step time.

A staged study (autotune.space.SearchSpace.staged) searches the statistical knobs (batch size,
optimizer, learning rate ...) by time to the target, every systems knob at the baseline's
setting, and then fits each systems param of the space to the recipe it chose: each other value
of the param is timed against the current one (autotune.study.paired), and the fastest that is
faster in every pair and learns the same is kept. Fitting after the search fits the systems to
the recipe's own batch size and model (what is fastest at batch 16 need not be at 256), once;
and a systems gain, which time to a target sees only through the noise of convergence, is
measured to a percent. The fitted configuration against the recipe with the baseline's systems
settings, timed the same way, is the same-training speedup.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from autotune.formatting import settings_text
from autotune.study.paired import compare_step_times

if TYPE_CHECKING:
    from autotune.knob import Param
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher

# values of a numeric param tried at most, its ends and a middle
NUMERIC_TRIES = 3


def candidate_values(param: "Param", current: Any) -> list[Any]:
    """The values of `param` to time against `current`: every other choice of a categorical,
    the ends and the (geometric, for a log range) middle of a numeric range."""
    if param.type in ("categorical", "bool"):
        return [c for c in param.choices or () if c != current]
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    middle = math.sqrt(low * high) if param.log and low > 0 else (low + high) / 2
    values = [low, middle, high][:NUMERIC_TRIES]
    if param.type == "int":
        values = [int(round(v)) for v in values]
    unique: list[Any] = []
    for value in values:
        if value != current and value not in unique:
            unique.append(value)
    return unique


def refit_threads(launcher: "TrialLauncher", settings: dict[str, Any], owned: set[str]) -> dict[str, Any]:
    """`settings` with threads refitted to their workers, as the search fitted them, unless
    threads are among the `owned` params (the search's or the stage's own)."""
    if "threads" in owned or "threads" not in settings:
        return settings
    return launcher.fit_threads({k: v for k, v in settings.items() if k != "threads"})


def fit_param(launcher: "TrialLauncher", events: "StudyEvents", current: dict[str, Any], param: "Param",
              fitted: set[str], seed: int) -> tuple[list[dict[str, Any]], Any]:
    """Each other value of `param` timed against `current`: the rows, and the value to keep (the
    fastest that is faster in every pair and learns the same; None: keep the current one)."""
    rows: list[dict[str, Any]] = []
    best: tuple[Any, float] | None = None
    for value in candidate_values(param, current.get(param.name)):
        candidate = refit_threads(launcher, {**current, param.name: value}, fitted)
        label = f"systems stage: {param.name} {current.get(param.name)} -> {value}"
        comparison = compare_step_times(launcher, events, current, candidate, label, seed)
        rows.append({"setting": param.name, "from": current.get(param.name), "to": value, **comparison.to_dict()})
        if comparison.faster and comparison.same_learning and (best is None or comparison.median > best[1]):
            best = (value, comparison.median)
    for row in rows:
        row["kept"] = best is not None and row["to"] == best[0]
    return rows, None if best is None else best[0]


def fit_systems(launcher: "TrialLauncher", events: "StudyEvents", recipe: dict[str, Any],
                params: list["Param"], seed: int) -> dict[str, Any]:
    """Fit `params` (systems) to `recipe`: the settings it ends with, every comparison made, and
    the same-training speedup of the fitted settings over `recipe` (None when nothing changed)."""
    fitted_names = {p.name for p in params}
    current, tried = dict(recipe), []
    for param in params:
        if not param.active(current):
            continue
        rows, winner = fit_param(launcher, events, current, param, fitted_names, seed)
        tried.extend(rows)
        if winner is not None:
            current = refit_threads(launcher, {**current, param.name: winner}, fitted_names)
    fit: dict[str, Any] = {"settings": current, "tried": tried, "same_training": None,
                           "changed": {k: v for k, v in current.items() if recipe.get(k) != v}}
    if fit["changed"]:
        label = f"same-training speedup: {settings_text(fit['changed'])}"
        fit["same_training"] = compare_step_times(launcher, events, recipe, current, label, seed + 100).to_dict()
    return fit
