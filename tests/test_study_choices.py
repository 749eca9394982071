"""What a study decides around its trials: threads that fit a trial, the real run's length the
projection scales to, the playoff among leaders tied within the noise, and the path "why it is
faster" walks from the baseline to the best."""

from __future__ import annotations

import pytest

from autotune.errors import UsageError
from autotune.spec import StudySpec
from autotune.storage.local import Store
from autotune.settings import resolve_settings
from autotune.study.ablation import knob_steps, path_configurations
from autotune.study.confirm import playoff_winner
from autotune.study.prepare import prepare
from autotune.study.runner import StudyRunner

from home_processes import QUICK, CliHome, error_lines


@pytest.fixture
def runner() -> StudyRunner:
    return StudyRunner(prepare(StudySpec(name="choices", workload="digits", device="cpu", confirm=0)), Store())


def test_threads_the_search_does_not_set_fit_the_trial(runner: StudyRunner) -> None:
    cores = runner.context.hardware.cpu_count
    # DataLoader workers need cores too: a trial's threads are its share less its workers
    assert runner.launcher.fit_threads({"workers": 1})["threads"] == max(1, cores - 1)
    assert runner.launcher.fit_threads({"workers": cores + 3})["threads"] == 1
    assert runner.launcher.fit_threads({"batch_size": 128})["threads"] == cores  # the baseline's 0 workers
    # threads the search sets are its own
    assert runner.launcher.fit_threads({"threads": 2, "workers": 1}) == {"threads": 2, "workers": 1}
    runner.spec.workers = 2  # two trials side by side split the cores
    assert runner.launcher.fit_threads({"workers": 0})["threads"] == max(1, cores // 2)


def test_the_projection_scales_to_the_real_run_length() -> None:
    assert StudySpec(name="s", budget={"epochs": 5}, run_epochs=90).run_scale == 18.0
    assert StudySpec(name="s", budget={"epochs": 5}).run_scale == 1.0
    # a steps budget has no epochs to scale by: the run length is only checked at
    assert StudySpec(name="s", budget={"steps": 100}, run_epochs=90).run_scale == 1.0
    with pytest.raises(UsageError, match="positive number of epochs"):
        StudySpec(name="s", run_epochs=0).validate()


def test_the_run_length_is_given_or_ten_budgets() -> None:
    assert StudySpec(name="s", budget={"steps": 150}).run_length == {"steps": 1500}
    assert StudySpec(name="s", budget={"epochs": 5}).run_length == {"epochs": 50}
    assert StudySpec(name="s", budget={"steps": 150}, run_steps=4000).run_length == {"steps": 4000}
    assert StudySpec(name="s", budget={"steps": 150}, run_epochs=3).run_length == {"epochs": 3}
    with pytest.raises(UsageError, match="shorter than the study's budget"):
        StudySpec(name="s", budget={"steps": 150}, run_steps=100).validate()
    with pytest.raises(UsageError, match="one run length"):
        StudySpec(name="s", budget={"steps": 150}, run_steps=1000, run_epochs=3).validate()
    with pytest.raises(UsageError, match="positive number of steps"):
        StudySpec(name="s", run_steps=0).validate()


def test_the_path_changes_one_knob_at_a_time_in_apply_order(runner: StudyRunner) -> None:
    start = dict(runner.baseline)
    end = {**start, "batch_size": 256, "optimizer": "adam", "beta2": 0.99, "weight_decay": 1e-4,
           "learning_rate": 0.003, "workers": 1}
    end.pop("momentum", None)  # inactive with adam
    steps = knob_steps(runner.context, start, end)
    names = [knob for knob, _ in steps]
    assert set(names) == {"batch_size", "optimizer", "learning_rate", "workers"}
    order = list(runner.context.registry.knobs)
    assert names == sorted(names, key=order.index)  # the order knobs are applied in
    changes = dict(steps)
    # a knob moves with its sub-settings, and drops what the best leaves out (sgd's momentum)
    assert changes["optimizer"] == {"optimizer": "adam", "beta2": 0.99, "weight_decay": 1e-4, "momentum": None}
    assert changes["batch_size"] == {"batch_size": 256}
    assert knob_steps(runner.context, start, dict(start)) == []
    # so that every configuration on the path is one the knobs accept (no momentum with adam)
    path = path_configurations(runner.launcher, start, end, fitted_threads=False)
    optimizer_step = next(current for knob, _, current in path if knob == "optimizer")
    assert "momentum" not in optimizer_step and optimizer_step["optimizer"] == "adam"
    resolve_settings(runner.context.registry, runner.context.hardware, runner.context.workload, optimizer_step)


def test_fitted_threads_follow_the_workers_step_on_the_path(runner: StudyRunner) -> None:
    cores = runner.context.hardware.cpu_count
    start = dict(runner.baseline)
    end = {**start, "batch_size": 32, "workers": 1, "threads": max(1, cores - 1)}  # as the search fitted it
    path = path_configurations(runner.launcher, start, end, fitted_threads=True)
    assert [knob for knob, _, _ in path] == ["batch_size", "workers"]  # no step of its own
    (_, _, after_batch), (_, _, after_workers) = path
    # every configuration on the path is one a trial could have been: no oversubscription
    assert after_batch["threads"] == cores and after_batch["workers"] == 0
    assert after_workers == end
    searched = path_configurations(runner.launcher, start, end, fitted_threads=False)
    if cores > 1:  # on one core the best's threads are the baseline's
        assert [knob for knob, _, _ in searched] == ["batch_size", "workers", "threads"]


def test_the_playoff_picks_the_best_mean_and_a_miss_loses() -> None:
    rows = [
        {"number": 4, "search_value": 0.9, "rerun_value": 2.4},  # lucky once: mean 1.65
        {"number": 7, "search_value": 1.2, "rerun_value": 1.3},  # steady: mean 1.25
        {"number": 9, "search_value": 1.0, "rerun_value": None},  # missed the target again
    ]
    assert playoff_winner(rows, "minimize")["number"] == 7
    assert playoff_winner([rows[0], rows[2]], "minimize")["number"] == 4
    assert playoff_winner([{"number": 1, "search_value": 0.9, "rerun_value": 0.8},
                           {"number": 2, "search_value": 0.95, "rerun_value": 0.9}], "maximize")["number"] == 2


def test_a_baseline_rerun_that_missed_the_target_counts_at_a_lower_bound() -> None:
    from autotune.intervals import median_interval
    from autotune.objectives import OBJECTIVES
    from autotune.study.confirm import pair_speedup

    tta = OBJECTIVES["time-to-accuracy"]
    assert pair_speedup(tta, {"value": 2.0}, {"value": 8.0}) == (4.0, False)
    # the baseline trained its whole 7 s without reaching the target: at least 3.5x
    assert pair_speedup(tta, {"value": 2.0}, {"value": None, "missed_after": 7.0}) == (3.5, True)
    # a best that missed bounds the ratio from above only, and a failed run gives nothing
    assert pair_speedup(tta, {"value": None}, {"value": 8.0}) == (None, False)
    assert pair_speedup(tta, {"value": 2.0}, {"value": None}) == (None, False)
    # understated ratios can only lower the interval: its low end stays a lower bound
    true, recorded = [4.0, 4.4, 5.0], [3.5, 4.4, 5.0]
    assert median_interval(recorded).low <= median_interval(true).low


def test_a_path_step_next_to_a_run_that_missed_the_target_is_a_bound() -> None:
    from autotune.objectives import OBJECTIVES
    from autotune.study.ablation import step_ratio

    tta = OBJECTIVES["time-to-accuracy"]
    assert step_ratio(tta, (8.0, False), (4.0, False)) == {"ratio": 2.0}
    # the step's run missed after 10 s: it took at least 10 s, so the step is at most 0.8x ...
    assert step_ratio(tta, (8.0, False), (10.0, True)) == {"ratio": 0.8, "bound": "at most"}
    # ... and the next one, from at least 10 s to 1 s, at least 10x
    assert step_ratio(tta, (10.0, True), (1.0, False)) == {"ratio": 10.0, "bound": "at least"}
    # two bounds in a row, or a run with no time, say nothing
    assert step_ratio(tta, (10.0, True), (12.0, True)) == {"ratio": None}
    assert step_ratio(tta, (None, False), (1.0, False)) == {"ratio": None}


# --- --enqueue -----------------------------------------------------------------------------------


def _waiting(runner: StudyRunner) -> list[tuple[dict, dict]]:
    import optuna

    study = runner.open()
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    return [(t.system_attrs["fixed_params"], t.user_attrs) for t in waiting]


def test_enqueued_trials_run_after_the_baseline_with_only_their_settings_changed(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'q.db'}"
    spec = dict(name="queued", workload="digits", device="cpu", confirm=0, n_trials=5, storage=storage,
                enqueue=("optimizer=adam,learning_rate=0.003", "batch_size=256"))
    runner = StudyRunner(prepare(StudySpec(**spec)), Store())
    (base, base_attrs), (first, first_attrs), (second, _) = _waiting(runner)
    assert base_attrs == {"baseline": True} and first_attrs == {"enqueued": True}
    # the baseline with the named settings changed; momentum goes with sgd, adam's beta2 is its default
    assert first == {**{k: v for k, v in base.items() if k != "momentum"}, "optimizer": "adam",
                     "learning_rate": 0.003, "beta2": 0.999}
    assert second == {**base, "batch_size": 256}
    # resuming with the same --enqueue adds nothing: those params are in the study
    again = StudyRunner(prepare(StudySpec(**spec)), Store())
    assert len(_waiting(again)) == 3


@pytest.mark.parametrize("enqueue, message", [
    (("batch_size",), "expected KEY=VALUE"),
    (("colour=red",), "'colour' is not searched by space"),
    (("batch_size=many",), "--enqueue 'batch_size=many': "),
    (("momentum=0.5,optimizer=adam",), "applies only when optimizer is sgd"),
    (("batch_size=64",) * 5, "leaves room for 4 after the baseline"),
])
def test_a_bad_enqueue_is_a_usage_error_before_anything_is_written(tmp_path, enqueue, message) -> None:
    db = tmp_path / "bad.db"
    spec = StudySpec(name="bad", workload="digits", device="cpu", n_trials=5, storage=f"sqlite:///{db}",
                     enqueue=enqueue)
    with pytest.raises(UsageError, match=message):
        prepare(spec)
    assert not db.exists()


def test_an_enqueued_setting_the_space_does_not_search_is_one_line_exit_2(cli_home: CliHome) -> None:
    result = cli_home.run("study", "start", "--name", "q", "--n-trials", "3", "--enqueue", "colour=red", *QUICK)
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "--enqueue 'colour=red': 'colour' is not searched by space" in line
    assert not (cli_home.path / "studies.db").exists()


def test_a_combination_this_torch_cannot_run_is_skipped_not_failed(tmp_path) -> None:
    """rmsprop has no fused implementation: the trial that asks for it ends `unsupported`, which
    is a point of the space that does not exist here, not a failure: pruned with its reason, and
    the study's failed count stays 0."""
    import optuna

    space = tmp_path / "impl.toml"
    space.write_text('only = ["optimizer", "optimizer_impl"]\n[knobs.optimizer]\nchoices = ["sgd", "rmsprop"]\n'
                     '[knobs.optimizer_impl]\nchoices = ["default", "fused"]\n')
    storage = f"sqlite:///{tmp_path / 'u.db'}"
    spec = StudySpec(name="unsupported", workload="digits", device="cpu", confirm=0, n_trials=2, seed=0,
                     storage=storage, space=str(space), budget={"steps": 2},
                     enqueue=("optimizer=rmsprop,optimizer_impl=fused",))
    report = StudyRunner(prepare(spec), Store()).run()
    assert report["counts"] == {"complete": 1, "pruned": 1, "failed": 0}
    skipped = optuna.load_study(study_name="unsupported", storage=storage).trials[1]
    assert skipped.state == optuna.trial.TrialState.PRUNED
    assert skipped.user_attrs["autotune_status"] == "unsupported"
    assert skipped.user_attrs["reason"].startswith("unsupported here: optimizer_impl fused: RMSprop has no fused")


@pytest.mark.parametrize("objective, seconds", [("time-to-accuracy", 0.9), ("throughput", None)])
def test_the_noise_says_how_long_the_runs_are_only_in_seconds(objective: str, seconds: float | None) -> None:
    """A noisy study on an idle machine names its runs' length: the baseline's re-run values are
    seconds to the target for time-to-accuracy, but samples/s for throughput, which is no length."""
    from autotune.study.confirm import noise
    from autotune.study.context import TrialContext

    context = TrialContext.of(prepare(StudySpec(name="n", workload="digits", device="cpu", objective=objective)))
    conf = {"runs": [{"baseline": {"value": v}} for v in (0.8, 0.9, 1.3)]}
    measured = noise(context, [], None, conf)
    assert measured["source"] == "re-runs" and measured["cause"] == "run"
    assert measured["run_seconds"] == seconds
