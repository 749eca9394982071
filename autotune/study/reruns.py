"""One configuration trained again after the search, with a fresh seed, to the study's target:
the run that confirmation, the playoff among tied leaders and the "why it is faster" path are
made of."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from autotune.run.projection import measured_time, time_before_missing
from autotune.launch.trial_process import TrialOutcome, launch
from autotune.statuses import RunStatus

if TYPE_CHECKING:
    from autotune.study.runner import StudyRunner


def rerun(runner: "StudyRunner", settings: dict[str, Any], seed: int, log_name: str) -> tuple[TrialOutcome, dict[str, Any]]:
    """Train `settings` once with `seed`, stopping at the target as trials do; the outcome and
    its result (empty when the run gave none)."""
    request = runner.request(dict(settings), False, str(runner.logs_dir / log_name))
    request.options = dataclasses.replace(
        request.options, seed=seed, target=runner.target, stop_at_target=runner.objective.stop_at_target,
    )
    with runner.lease() as gpus:
        runner.use_gpus(request, gpus)
        outcome = launch(request)
    return outcome, outcome.result or {}


def timed_against(runner: "StudyRunner", reference: dict[str, Any], settings: dict[str, Any], seed: int,
                  log_name: str) -> tuple[TrialOutcome, dict[str, Any]]:
    """An inference study's confirmation pair: `settings` and `reference` served in one trial
    process and timed against each other in alternating blocks (autotune.inference.compare)."""
    request = runner.request(dict(settings), False, str(runner.logs_dir / log_name))
    assert request.inference is not None
    request.inference = dataclasses.replace(request.inference, reference=dict(reference), seed=seed)
    with runner.lease() as gpus:
        runner.use_gpus(request, gpus)
        outcome = launch(request)
    return outcome, outcome.result or {}


def real_value(runner: "StudyRunner", outcome: TrialOutcome, result: dict[str, Any]) -> float | None:
    """A re-run's value as measured, not projected: for time-to-accuracy the real time to target
    end to end (autotune.run.projection.measured_time); None when it failed or missed."""
    objective = runner.objective
    if outcome.status != RunStatus.OK or objective.multi:
        return None
    return measured_time(result) if objective.name == "time-to-accuracy" else objective.values(result)


def missed_time(runner: "StudyRunner", outcome: TrialOutcome, result: dict[str, Any]) -> float | None:
    """For a time-to-accuracy re-run that trained its whole budget without reaching the target:
    its whole run, end to end, a lower bound on its time to the target. None otherwise (it
    reached the target, failed, or the objective is another)."""
    if outcome.status != RunStatus.OK or runner.objective.name != "time-to-accuracy":
        return None
    if measured_time(result) is not None:
        return None
    return time_before_missing(result)
