"""The single rule by which a trial runs again, and the one place autotune enqueues trials.

A trial that ended without a verdict on its configuration (its runner died, it was interrupted,
a forced daemon shutdown stopped it, it never trained because the study was stopping or it made
way for the baseline) is enqueued once more with user attr `retry_of` = its number, and keeps
the baseline flag when it was the baseline (the baseline fixes the target and every speedup, so
it must run again like any other trial) and the enqueued flag when --enqueue asked for it. The
trial it retries then no longer counts toward --n-trials (TrialRow.retries); its retry does. A trial is run again at most once: when another
trial already retries it, nothing is enqueued.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.processes import pid_alive
from autotune.statuses import RunStatus

# Who runs a trial (user attr "runner"): how a later runner on this host tells a trial whose
# runner died from one another live runner still holds.
RUNNER_ID = f"{socket.gethostname()}:{os.getpid()}"


def enqueue(study: optuna.Study, params: dict[str, Any], *, baseline: bool = False, retry_of: int | None = None,
            enqueued: bool = False) -> None:
    """Put a trial on the study's queue: the baseline recipe, a retry of trial `retry_of`, or a
    trial `--enqueue` asked for (`enqueued`: not again when the study already has its params,
    unless it is a retry)."""
    attrs: dict[str, Any] = {}
    if retry_of is not None:
        attrs["retry_of"] = retry_of
    if baseline:
        attrs["baseline"] = True
    if enqueued:
        attrs["enqueued"] = True
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=enqueued and retry_of is None)


def retried(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of the trials some trial already runs again."""
    return {t.user_attrs["retry_of"] for t in trials if t.user_attrs.get("retry_of") is not None}


def requeue(study: optuna.Study, trial: FrozenTrial, trials: list[FrozenTrial] | None = None) -> bool:
    """Run `trial` once more (see the module docstring). False when another trial already runs it
    again: nothing is enqueued."""
    trials = study.get_trials(deepcopy=False) if trials is None else trials
    if trial.number in retried(trials):
        return False
    # A trial that had not started yet holds its enqueued values as fixed params.
    params = trial.system_attrs.get("fixed_params") or trial.params
    # it runs as what it retries does: the baseline's recipe, or the baseline plus the changes
    # --enqueue gave (autotune.study.enqueued)
    enqueue(study, params, baseline=bool(trial.user_attrs.get("baseline")), retry_of=trial.number,
            enqueued=bool(trial.user_attrs.get("enqueued")))
    return True


def requeue_ended(study: optuna.Study, status: str, numbers: Iterable[int] | None = None) -> list[int]:
    """Requeue the FAIL trials whose run ended with `status` (interrupted, killed), only those
    numbered in `numbers` when given. Returns the numbers requeued."""
    trials = study.get_trials(deepcopy=False)
    wanted = None if numbers is None else set(numbers)
    done = []
    for t in trials:
        if t.state != TrialState.FAIL or t.user_attrs.get("autotune_status") != status:
            continue
        if wanted is not None and t.number not in wanted:
            continue
        if requeue(study, t, trials):
            done.append(t.number)
            trials = study.get_trials(deepcopy=False)
    return done


def recover_stale_trials(study: optuna.Study) -> list[tuple[int, str]]:
    """Fail RUNNING trials whose runner process on this host is gone, and run each once more.

    Trials of runners on other machines are left to Optuna's heartbeats. Returns (number, why)
    for each trial recovered.
    """
    host = socket.gethostname()
    recovered = []
    storage = study._storage  # the public BaseStorage API below needs the study's own storage
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        runner = t.user_attrs.get("runner", "")
        runner_host, _, pid = runner.rpartition(":")
        if runner_host != host or not pid.isdigit() or pid_alive(int(pid)) and int(pid) != os.getpid():
            continue
        why = f"its runner (pid {pid}) died during the trial"
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "autotune_status", RunStatus.STALE.value)
        storage.set_trial_user_attr(trial_id, "reason", why)
        study.tell(t.number, state=TrialState.FAIL)
        requeue(study, t)
        recovered.append((t.number, why))
    return recovered
