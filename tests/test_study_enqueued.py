"""Trials run with settings given rather than sampled (autotune.study.enqueued): the baseline and
`--enqueue`. What Optuna records for them is what ran."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import optuna
import pytest

from autotune.home import trial_logs
from autotune.spec import StudySpec
from autotune.storage.local import Store
from autotune.study.enqueued import recordable
from autotune.study.prepare import prepare
from autotune.study.runner import StudyRunner

# digits trained the way many tutorials do it with Adam: torch's default weight decay of 0.0,
# which a log-scale search (1e-6 .. 0.1) cannot hold, and batches of 16, below the space's 32.
RECIPE = textwrap.dedent(
    """
    from autotune.plugins.workloads.catalog import digits

    def adam_digits():
        workload = digits()
        workload.baseline = {**workload.baseline, "optimizer": "adam", "weight_decay": 0.0, "batch_size": 16}
        return workload
    """
)

SPACE = textwrap.dedent(
    """
    description = "the recipe's searched settings, its batch size out of range"
    only = ["batch_size", "optimizer", "learning_rate"]

    [knobs.batch_size]
    low = 32
    high = 256
    log = true
    """
)


def _what_it_applied(name: str, number: int) -> dict:
    """The settings trial `number`'s own process printed as it started: what it resolved and ran."""
    log = (trial_logs(name) / f"{number}.log").read_text()
    line = next(line for line in log.splitlines() if line.startswith("trial pid "))
    return ast.literal_eval(line[line.index("{"):])


def test_optuna_records_what_the_baseline_and_enqueued_trials_ran(tmp_path: Path) -> None:
    (tmp_path / "adam_recipe_for_enqueue.py").write_text(RECIPE)
    (tmp_path / "space.toml").write_text(SPACE)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = StudySpec(name="given", workload="adam_recipe_for_enqueue:adam_digits", workdir=str(tmp_path),
                     device="cpu", space=str(tmp_path / "space.toml"), objective="accuracy",
                     budget={"steps": 4}, n_trials=3, confirm=0, seed=0, storage=storage,
                     enqueue=("learning_rate=0.003", "optimizer=sgd"))
    runner = StudyRunner(prepare(spec), Store())
    runner.open()
    runner.run()

    trials = optuna.load_study(study_name="given", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    space = runner.context.space
    for t in trials:
        ran = t.user_attrs["settings"]
        # the record is the trial process's own account of what it applied
        assert ran == _what_it_applied("given", t.number)
        # every param Optuna holds ran with that value; every searched value that ran and that
        # Optuna can hold is a param; nothing was sampled
        assert t.params == {k: ran[k] for k in t.params}
        assert t.params == {p.name: ran[p.name] for p in space.params
                            if p.name in ran and p.active(ran) and p.name != "weight_decay"}
    base, lower_lr, sgd = trials
    assert base.user_attrs["baseline"] and lower_lr.user_attrs["enqueued"] and sgd.user_attrs["enqueued"]
    assert base.params == {"batch_size": 16, "optimizer": "adam", "beta2": 0.999, "learning_rate": 0.01}
    # weight decay 0.0 ran: Optuna cannot hold it on a log scale, so it is no param (the sampler
    # drew one that never ran before) and the trial's settings say it
    assert base.user_attrs["settings"]["weight_decay"] == 0.0
    # --enqueue is the baseline plus the given changes, nothing else
    assert lower_lr.params == {**base.params, "learning_rate": 0.003}
    assert lower_lr.user_attrs["settings"] == {**base.user_attrs["settings"], "learning_rate": 0.003}
    # a setting the change makes active takes its baseline value: sgd's momentum from the recipe
    assert sgd.params == {"batch_size": 16, "optimizer": "sgd", "momentum": 0.9, "learning_rate": 0.01}
    expected = {k: v for k, v in base.user_attrs["settings"].items() if k not in ("weight_decay", "beta2")}
    assert sgd.user_attrs["settings"] == {**expected, "optimizer": "sgd", "momentum": 0.9}


def test_a_given_value_that_did_not_run_is_no_param(tmp_path: Path) -> None:
    # one stage: threads are searched, so given ones are params (a staged search fits them after)
    runner = StudyRunner(prepare(StudySpec(name="cap", workload="digits", device="cpu", confirm=0, staged=False,
                                           storage=f"sqlite:///{tmp_path / 's.db'}")), Store())
    space, baseline = runner.context.space, dict(runner.context.baseline)
    given = recordable(space, baseline, baseline)
    assert given["threads"] == baseline["threads"]
    # trials side by side: the launcher capped the threads given, so that value did not run
    assert "threads" not in recordable(space, baseline, {**given, "threads": baseline["threads"] + 1})
    # a value not given when the trial was enqueued would be sampled: never recorded
    assert "batch_size" not in recordable(space, baseline, {k: v for k, v in given.items() if k != "batch_size"})
    # a value Optuna cannot hold (0.0 on a log scale) is no param either
    adam = {**baseline, "optimizer": "adam", "weight_decay": 0.0, "beta2": 0.999}
    adam.pop("momentum")
    assert "weight_decay" not in recordable(space, adam, {**given, "weight_decay": 0.0})


@pytest.fixture(autouse=True)
def _no_module_left_behind():
    import sys

    yield
    sys.modules.pop("adam_recipe_for_enqueue", None)


def test_a_trial_optunas_heartbeat_retries_keeps_the_settings_it_was_given(tmp_path: Path) -> None:
    """A staged study's --enqueue may give a systems setting that is no Optuna param (threads,
    fitted after the search): the trial Optuna's heartbeat creates to retry one that died runs it
    as given, not with the sampled params alone."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    from autotune.study.enqueued import given_params

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'studies.db'}")
    study.enqueue_trial({"learning_rate": 0.01, "threads": 1}, user_attrs={"enqueued": True})
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-4, 1.0, log=True)
    study.tell(trial, state=TrialState.FAIL)  # its runner died
    RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.trials[0])  # as autotune.storage.rdb sets it
    retry = study.trials[1]
    assert retry.state == TrialState.WAITING and retry.params == {"learning_rate": 0.01}
    assert retry.user_attrs["enqueued"] is True
    assert given_params(study, retry.number) == {"learning_rate": 0.01, "threads": 1}
