"""From the search's best trial to the answer a study confirms: riders dropped, the recipe held
at the run's length, the systems knobs fitted, and the speedup split in two.

For a time-to-target training study, after the search (and the playoff among tied leaders):
1. each candidate, the best trial first and then the next best with other settings (up to
   CANDIDATES), loses its riders (autotune.study.riders) and is trained at the run's length
   beside the baseline (autotune.study.horizon); the first whose recipe holds is the answer's
   recipe. None holds: the recipe stays the baseline's, and the report says why.
2. a staged study fits its systems knobs to that recipe (autotune.study.systems).
3. confirmation times the answer against the baseline at the budget (autotune.study.confirm);
   the total speedup splits into the same-training one (the systems settings, by paired step
   time on the answer's recipe) and the recipe one (the rest: total / same-training).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from autotune.formatting import settings_text
from autotune.storage.results import best_row
from autotune.storage.trial_row import row_from_frozen
from autotune.study.ablation import knob_steps
from autotune.study.horizon import Horizon
from autotune.study.paired import compare_step_times
from autotune.study.riders import drop_riders
from autotune.study.systems import fit_systems
from autotune.study.trial_watch import noise_margin

if TYPE_CHECKING:
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher

CANDIDATES = 3


@dataclass
class Answer:
    """The settings a study answers with, and how it came to them."""

    settings: dict[str, Any]
    trial: int | None  # the search trial the recipe came from; None: the baseline's recipe
    riders: list[dict[str, Any]] = field(default_factory=list)
    horizon: dict[str, Any] | None = None
    rejected: list[dict[str, Any]] = field(default_factory=list)  # candidates whose recipe did not hold
    systems: dict[str, Any] | None = None  # the systems stage (autotune.study.systems.fit_systems)
    same_training: dict[str, Any] | None = None  # the systems settings' paired step-time comparison
    against: float | None = None  # the search's best value when the answer was made (it stands while that does)
    systems_changed: dict[str, Any] = field(default_factory=dict)  # its systems settings not the baseline's

    @property
    def recipe_changed(self) -> bool:
        return self.trial is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def applies(launcher: "TrialLauncher") -> bool:
    """Whether a study's answer goes through these checks: training to a target."""
    context = launcher.context
    return context.objective.stop_at_target and not context.task.serves_model and not context.objective.multi


def candidates(launcher: "TrialLauncher", best: FrozenTrial) -> list[FrozenTrial]:
    """`best`, then the next best feasible trials with settings of their own, fastest first; none
    when `best` is the baseline (no recipe beat it: only the systems knobs are left to fit)."""
    if best.user_attrs.get("baseline"):
        return []
    study = launcher.state.study
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("baseline") and t.value is not None and t.user_attrs.get("feasible", True)
                and t.number != best.number]
    ranked, seen = [best], [best.user_attrs.get("settings")]
    for trial in sorted(complete, key=lambda t: t.value):
        if len(ranked) >= CANDIDATES:
            break
        if trial.user_attrs.get("settings") not in seen:
            ranked.append(trial)
            seen.append(trial.user_attrs.get("settings"))
    return ranked


def find_answer(launcher: "TrialLauncher", events: "StudyEvents", best: FrozenTrial,
                baseline: FrozenTrial) -> Answer:
    """The answer to confirm, from the search's `best` (see the module doc)."""
    context = launcher.context
    base = baseline.user_attrs["settings"]
    seed = (context.spec.seed or 0) + 3000
    horizon = Horizon(launcher, events, base, seed)
    answer = Answer(settings=dict(base), trial=None)
    for trial in candidates(launcher, best):
        settings, riders = drop_riders(launcher, events, trial.user_attrs["settings"], base,
                                       noise_margin(baseline), seed)
        if not changes(launcher, base, settings):
            answer.rejected.append({"trial": trial.number, "riders": riders,
                                    "why": "without its riders it is the baseline"})
            continue
        check = horizon.check(settings, f"trial {trial.number}") if changes(launcher, base, settings, "recipe") \
            else None
        if check is not None and check["holds"] is False:
            answer.rejected.append({"trial": trial.number, "riders": riders, "horizon": check, "why": check["why"]})
            continue
        answer = Answer(settings=settings, trial=trial.number, riders=riders, horizon=check, rejected=answer.rejected)
        break
    if context.space.fitted:
        answer.systems = fit_systems(launcher, events, answer.settings, context.space.fitted, seed + 200)
        answer.settings = answer.systems["settings"]
    answer.systems_changed = changes(launcher, base, answer.settings, "systems")
    if not context.spec.keep_recipe and answer.recipe_changed:  # else the whole speedup is the same training
        answer.same_training = same_training(launcher, events, answer, base, seed + 300)
    answer.against = top_value(launcher)
    return answer


def top_value(launcher: "TrialLauncher") -> float | None:
    """The search's best value, whatever a study's answer or playoff chose: the answer stands
    while no trial beats it (autotune.storage.results.best_row)."""
    study = launcher.state.study
    top = best_row(study, [row_from_frozen(t) for t in study.get_trials(deepcopy=False)], user_attrs={})
    return top.value if top is not None else None


def changes(launcher: "TrialLauncher", baseline: dict[str, Any], settings: dict[str, Any],
            kind: str | None = None) -> dict[str, Any]:
    """The settings of `settings` that differ from `baseline`'s: all, those of systems knobs
    (`kind` "systems") or those of the knobs that change what is learned ("recipe")."""
    knobs = launcher.context.registry.knobs
    out: dict[str, Any] = {}
    for knob, changed in knob_steps(launcher.context, baseline, settings):
        systems = knob in knobs and knobs[knob].kind == "systems"
        if kind is None or (kind == "systems") == systems:
            out.update(changed)
    return out


def same_training(launcher: "TrialLauncher", events: "StudyEvents", answer: Answer, baseline: dict[str, Any],
                  seed: int) -> dict[str, Any] | None:
    """The answer's systems settings timed against its recipe with the baseline's (paired step
    time); None when it has none. The systems stage's own final comparison where it made one."""
    systems = changes(launcher, baseline, answer.settings, "systems")
    if not systems:
        return None
    if answer.systems is not None and answer.systems.get("same_training") and \
            answer.systems["changed"] == systems:
        return {**answer.systems["same_training"], "settings": systems}
    recipe = {k: v for k, v in answer.settings.items() if k not in systems}
    recipe.update({k: baseline[k] for k in systems if k in baseline})
    label = f"same-training speedup: {settings_text(systems)}"
    return {**compare_step_times(launcher, events, recipe, answer.settings, label, seed).to_dict(),
            "settings": systems}


def speedups(answer: Answer, confirmation: dict[str, Any], keep_recipe: bool) -> dict[str, Any]:
    """The confirmed total split in two, multiplying to it: the same-training speedup (the
    systems settings, by paired step time on the answer's recipe) and the recipe speedup (the
    rest). An answer with the baseline's recipe (--keep-recipe, or no recipe of the search held)
    is the same training: its whole speedup is that."""
    total = confirmation.get("speedup_median")
    same = answer.same_training or {}
    keep_recipe = keep_recipe or not answer.recipe_changed
    if keep_recipe:
        factor, interval, how = total, confirmation.get("interval"), "confirmation (the recipe is the baseline's)"
    else:
        # no systems setting changed: the same training, 1x; one that did but gave no ratio: unknown
        factor, interval, how = same.get("ratio") if same else 1.0, same.get("interval"), same.get("how")
    recipe = 1.0 if keep_recipe else (total / factor if total and factor else None)
    return {"total": total, "same_training": factor, "same_training_interval": interval, "recipe": recipe,
            "systems": answer.systems_changed, "how": how}
