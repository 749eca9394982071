"""One configuration trained again after the search, with a fresh seed, to the study's target:
the run that confirmation, the playoff among tied leaders and the "why it is faster" path are
made of."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from autotune.launch.requests import InferenceRequest, ScriptRequest, TrainingRequest
from autotune.launch.trial_process import TrialOutcome
from autotune.statuses import RunStatus

if TYPE_CHECKING:
    from autotune.objectives import Objective
    from autotune.study.launcher import TrialLauncher


def rerun(launcher: "TrialLauncher", settings: dict[str, Any], seed: int,
          log_name: str) -> tuple[TrialOutcome, dict[str, Any]]:
    """Train `settings` once with `seed`, stopping at the target as trials do; the outcome and
    its result (empty when the run gave none)."""
    context = launcher.context
    request = launcher.request(dict(settings), False, str(context.logs_dir / log_name))
    if isinstance(request, (TrainingRequest, ScriptRequest)):
        request.options = dataclasses.replace(
            request.options, seed=seed, target=launcher.state.target, stop_at_target=context.objective.stop_at_target,
        )
    # a served model (the playoff of an inference study) is timed as its trial was: serving has
    # no training seed or target
    outcome = launcher.run(request)
    return outcome, outcome.result or {}


def timed_against(launcher: "TrialLauncher", reference: dict[str, Any], settings: dict[str, Any], seed: int,
                  log_name: str) -> tuple[TrialOutcome, dict[str, Any]]:
    """An inference study's confirmation pair: `settings` and `reference` served in one trial
    process and timed against each other in alternating blocks (autotune.inference.compare)."""
    request = launcher.request(dict(settings), False, str(launcher.context.logs_dir / log_name))
    assert isinstance(request, InferenceRequest)
    request.inference = dataclasses.replace(request.inference, reference=dict(reference), seed=seed)
    outcome = launcher.run(request)
    return outcome, outcome.result or {}


def real_value(objective: "Objective", outcome: TrialOutcome, result: dict[str, Any]) -> float | None:
    """A re-run's value as measured, not projected (for time-to-accuracy the real time to
    target end to end); None when it failed or missed."""
    if outcome.status != RunStatus.OK or objective.multi:
        return None
    return objective.rerun_value(result)


def missed_time(objective: "Objective", outcome: TrialOutcome, result: dict[str, Any]) -> float | None:
    """For a re-run that trained its whole budget without reaching the target: a lower bound on
    its value (time-to-accuracy: its whole run, end to end). None otherwise (it reached the
    target, failed, or the objective has no such bound)."""
    if outcome.status != RunStatus.OK:
        return None
    return objective.missed_after(result)
