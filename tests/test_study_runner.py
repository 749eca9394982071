"""Studies end to end: real Optuna storage, real trial processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from autotune.storage.local import Store
from autotune.spec import StudySpec
from autotune.study.prepare import prepare
from autotune.study.runner import StudyRunner
from autotune.study.slots import counted_trials
from autotune.cli import cli as autotune_cli

from home_processes import PLUGINS, QUICK, SLOW, CliHome, assert_sound, error_lines, finished

REPO = Path(__file__).resolve().parents[1]

CHAOS_PLUGIN = textwrap.dedent(
    """
    import os
    import torch
    from autotune import Knob, Param, hookimpl

    class Chaos(Knob):
        name = "chaos"
        help = "misbehaves on purpose"
        kind = "systems"

        def params(self, hardware):
            return [Param("chaos", "categorical", choices=("ok", "raise", "abort", "oom"))]

        def baseline(self, hardware):
            return {"chaos": "ok"}

        def apply(self, settings, plan):
            mode = settings["chaos"]
            if mode == "raise":
                raise ValueError("chaos knob refuses this value")
            if mode == "abort":
                os.abort()
            if mode == "oom" and plan.batch_size >= 256:
                def explode(model):
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
                plan.transform_model(explode)

    @hookimpl
    def register_knobs(register):
        register(Chaos())
    """
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("AUTOTUNE_HOME", str(path))
    return path


def cli(*args, env=None, timeout=300, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "autotune.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env or os.environ.copy(), **kwargs,
    )


def small_space(tmp_path: Path, knobs: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(knobs)
    return path


QUICK_ARGS = ["--space", "quick", "--budget-epochs", "2", "--seed", "1"]


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """One real 4-trial study, shared by the tests that only read it."""
    home = tmp_path_factory.mktemp("study") / "home"
    env = {**os.environ, "AUTOTUNE_HOME": str(home)}
    proc = cli("study", "start", "--name", "demo", *QUICK_ARGS, "--n-trials", "4", "--confirm", "1",
               "--no-tui", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return home, env, json.loads(proc.stdout)


def test_study_runs_reports_and_is_readable_by_optuna_cli(finished_study):
    home, env, report = finished_study
    assert report["objective"] == "time-to-accuracy"
    assert report["baseline"]["number"] == 0
    assert report["baseline"]["settings"]["optimizer"] == "sgd"
    assert 0.5 < report["target"] < 1.0
    assert sum(report["counts"].values()) == 4
    assert report["best"]["metrics"]["val_accuracy"] >= report["target"]
    if report["best"]["number"] != 0:
        conf = report["confirmation"]
        assert conf["repeats"] == 1 and conf["runs"][0]["baseline"]["status"] == "ok"

    url = f"sqlite:///{home / 'studies.db'}"
    optuna_cli = Path(sys.executable).with_name("optuna")
    studies = subprocess.run([str(optuna_cli), "studies", "--storage", url, "-f", "json"],
                             capture_output=True, text=True, check=True)
    assert [s["name"] for s in json.loads(studies.stdout)] == ["demo"]
    trials = subprocess.run([str(optuna_cli), "trials", "--study-name", "demo", "--storage", url, "-f", "json"],
                            capture_output=True, text=True, check=True)
    rows = json.loads(trials.stdout)
    assert len(rows) == 4
    assert "throughput" in json.dumps(rows)  # metrics travel as user attributes

    listed = json.loads(cli("study", "list", "--json", env=env).stdout)
    assert listed[0]["name"] == "demo" and listed[0]["status"] == "finished" and listed[0]["done"] == 4


def test_export_then_trial_run_reproduces_best_configuration(finished_study, tmp_path):
    _, env, _ = finished_study
    best = json.loads(cli("study", "best", "demo", "--json", env=env).stdout)
    exported = tmp_path / "best.toml"
    proc = cli("study", "export", "demo", "--output", str(exported), env=env)
    assert proc.returncode == 0, proc.stderr
    run = cli("trial", "run", "--config", str(exported), "--budget-steps", "3", "--json", env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["settings"] == best["settings"]


def _runner(home, tmp_path, space_text, n_trials, **spec_kwargs):
    plugin = tmp_path / "chaos_knob.py"
    plugin.write_text(CHAOS_PLUGIN)
    spec = StudySpec(
        name="chaos", space=str(small_space(tmp_path, space_text)), n_trials=n_trials,
        budget={"epochs": 1}, confirm=0, seed=0, plugin_paths=(str(plugin),), **spec_kwargs,
    )
    runner = StudyRunner(prepare(spec), Store())
    study = runner.open()
    return runner, study


def test_crashing_and_raising_knob_values_fail_their_trials_only(home, tmp_path):
    runner, study = _runner(home, tmp_path, 'only = ["chaos", "batch_size"]\n', n_trials=4,
                            objective="accuracy")
    study.enqueue_trial({"chaos": "raise", "batch_size": 64})
    study.enqueue_trial({"chaos": "abort", "batch_size": 64})
    study.enqueue_trial({"chaos": "ok", "batch_size": 128})
    runner.run()
    trials = {t.number: t for t in study.get_trials()}
    assert trials[0].state == TrialState.COMPLETE and trials[0].user_attrs["baseline"]
    assert trials[1].state == TrialState.FAIL
    assert "chaos knob refuses this value" in trials[1].user_attrs["reason"]
    assert trials[2].state == TrialState.FAIL
    assert "SIGABRT" in trials[2].user_attrs["reason"]
    assert trials[3].state == TrialState.COMPLETE
    assert counted_trials(study) == 4


def test_out_of_memory_marks_larger_batches_infeasible(home, tmp_path):
    runner, study = _runner(home, tmp_path, 'only = ["chaos", "batch_size"]\n', n_trials=4,
                            objective="accuracy")
    study.enqueue_trial({"chaos": "oom", "batch_size": 256})
    study.enqueue_trial({"chaos": "oom", "batch_size": 400})
    study.enqueue_trial({"chaos": "oom", "batch_size": 32})
    runner.run()
    trials = {t.number: t for t in study.get_trials()}
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["autotune_status"] == "oom"
    assert "out of memory" in trials[1].user_attrs["reason"]
    assert trials[1].system_attrs["constraints:memory"] == 1.0
    assert trials[2].state == TrialState.PRUNED
    assert trials[2].user_attrs["autotune_status"] == "infeasible"
    assert "batch_size 400 >= 256" in trials[2].user_attrs["reason"]
    assert "wall_time" not in trials[2].user_attrs  # it never ran
    assert trials[3].state == TrialState.COMPLETE


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_running_trial_and_resume_completes(home, tmp_path, signum):
    args = ["study", "start", "--name", "intr", *QUICK_ARGS, "--budget-epochs", "3", "--n-trials", "3",
            "--confirm", "0", "--no-tui"]
    proc = subprocess.Popen([sys.executable, "-m", "autotune.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    db = home / "autotune.db"
    deadline = time.time() + 120
    completed_before: set[int] = set()
    while time.time() < deadline:
        time.sleep(0.2)
        if not db.exists():
            continue
        try:
            with sqlite3.connect(db, timeout=30) as conn:
                live = conn.execute("select number, pid from live_trials where pid is not null").fetchall()
        except sqlite3.OperationalError as exc:  # the file exists before its tables do
            if "no such table" in str(exc):
                continue
            raise
        if live and live[0][0] >= 1:
            break
    else:
        proc.kill()
        pytest.fail("no trial started in time")
    url = f"sqlite:///{home / 'studies.db'}"
    completed_before = {t.number for t in optuna.load_study(study_name="intr", storage=url).get_trials()
                        if t.state == TrialState.COMPLETE}
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err

    study = optuna.load_study(study_name="intr", storage=url)
    assert not [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    interrupted = [t for t in study.get_trials() if t.user_attrs.get("autotune_status") == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0].state == TrialState.FAIL

    again = cli(*args)
    assert again.returncode == 0, again.stderr
    study = optuna.load_study(study_name="intr", storage=url)
    assert counted_trials(study) == 3
    for number in completed_before:  # nothing finished was re-run or lost
        assert study.trials[number].state == TrialState.COMPLETE
    retried = [t for t in study.get_trials() if t.user_attrs.get("retry_of") == interrupted[0].number]
    assert len(retried) == 1 and retried[0].params == interrupted[0].params
    assert len(study.trials) == 4  # three counted + the interrupted one


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "fastest"], "unknown objective 'fastest'"),
        (["--target", "1.5"], "--target is a validation accuracy between 0 and 1"),
        (["--n-trials", "0"], "--n-trials must be at least 1"),
        (["--storage", "sqlite:////dev/null/x/studies.db"], "cannot open storage sqlite:////dev/null/x/studies.db"),
        (["--workload", "no_such_module:make"], "cannot import module 'no_such_module'"),
        (["--space", "nope"], "unknown search space 'nope'"),
        (["--budget-epochs", "0"], "budget epochs must be a positive"),
        (["--device", "cpu", "--gpus-per-trial", "2"], "--gpus-per-trial 2: no CUDA GPUs here"),
    ],
)
def test_bad_study_input_is_one_line_exit_2_and_writes_nothing(home, args, message):
    proc = cli("study", "start", "--name", "bad", "--no-tui", *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotune: error:"), proc.stderr
    assert message in lines[0]
    assert not (home / "studies.db").exists()
    assert not (home / "autotune.db").exists()


def test_slower_than_the_best_prunes_only_beyond_the_noise() -> None:
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState, create_trial

    from autotune.study.trial_watch import MAX_NOISE_MARGIN, MIN_NOISE_MARGIN, beyond, noise_margin

    def baseline(p50: float, p95: float) -> optuna.trial.FrozenTrial:
        return create_trial(state=TrialState.COMPLETE, value=10.0, params={"b": 1},
                            distributions={"b": IntDistribution(1, 2)},
                            user_attrs={"baseline": True, "step_time_p50": p50, "step_time_p95": p95})

    quiet, busy = noise_margin(baseline(0.010, 0.0105)), noise_margin(baseline(0.010, 0.014))
    assert quiet == MIN_NOISE_MARGIN and busy == pytest.approx(0.4)
    assert noise_margin(baseline(0.010, 0.5)) == MAX_NOISE_MARGIN and noise_margin(None) == MIN_NOISE_MARGIN
    # the best took 10 s: 10.5 s is within the noise of an idle machine, 12 s is not
    assert not beyond(10.5, 10.0, quiet) and beyond(12.0, 10.0, quiet)
    # on a busy machine (+40%) 12 s may still be the faster configuration; 15 s is clearly slower
    assert not beyond(12.0, 10.0, busy) and beyond(15.0, 10.0, busy)
    assert not beyond(99.0, None, quiet)  # no best yet


# --- a metric where lower is better, end to end ----------------------------------------------


def test_a_lower_is_better_study_runs_end_to_end(regression_study, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    home, proc = regression_study
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "metric val_mse (lower is better), target val_mse<=" in " ".join(proc.stdout.split())
    study = optuna.load_study(study_name="reg", storage=f"sqlite:///{home / 'studies.db'}")
    assert study.user_attrs["metric"] == {"name": "val_mse", "direction": "minimize"}
    assert study.metric_names == ["seconds_to_val_mse_target"]  # what optuna-dashboard calls the objective
    baseline = next(t for t in study.trials if t.user_attrs.get("baseline"))
    # the target is the baseline's final val_mse plus 1%: lower is better, so the slack is upward
    assert study.user_attrs["target"] == pytest.approx(baseline.user_attrs["metric_value"] * 1.01, rel=1e-3)
    assert set(baseline.user_attrs["metrics"]) == {"val_mse", "val_mae"}
    trained = [t for t in study.trials if t.user_attrs.get("autotune_status") in ("ok", "pruned")]
    assert len(trained) == 3 and all(t.user_attrs["metric_value"] > 0 for t in trained)

    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    shown = CliRunner().invoke(autotune_cli, ["study", "show", "reg"])
    assert shown.exit_code == 0, shown.output
    assert "metric=val_mse (lower is better)" in " ".join(shown.output.split())
    assert any("┃" in line and "val_mse" in line for line in shown.output.splitlines())  # the column
    data = json.loads(CliRunner().invoke(autotune_cli, ["study", "show", "reg", "--json"]).stdout)
    assert data["summary"]["metric_info"] == {"name": "val_mse", "direction": "minimize"}


# --- faults injected into real studies: no single fault ruins a study, none passes silently -------
# (the runner's: a trial process killed, a knob that always raises, no trial completed, the
# storage deleted under it; an exported configuration repeats the study's run)


def test_sigkill_of_the_baseline_trial_process_reruns_the_baseline(cli_home: CliHome) -> None:
    proc = cli_home.start("study", "start", "--name", "kb", "--n-trials", "3", *SLOW)
    number, pid = cli_home.live_pid("kb", 0)
    os.kill(pid, signal.SIGKILL)
    code, _, err = finished(proc)
    assert code == 0, err[-3000:]
    trials = assert_sound(cli_home, "kb", 3)
    baselines = [t for t in trials if t.user_attrs.get("baseline")]
    assert baselines[0].state == TrialState.FAIL and "SIGKILL" in baselines[0].user_attrs["reason"]
    assert baselines[1].state == TrialState.COMPLETE and baselines[1].user_attrs["retry_of"] == 0
    assert "not run" not in err and "target accuracy None" not in err


def test_sigkill_of_another_trial_process_fails_only_that_trial(cli_home: CliHome) -> None:
    proc = cli_home.start("study", "start", "--name", "ko", "--n-trials", "3", *SLOW)
    number, pid = cli_home.live_pid("ko", 1)
    os.kill(pid, signal.SIGKILL)
    code, _, err = finished(proc)
    assert code == 0, err[-3000:]
    trials = assert_sound(cli_home, "ko", 3)
    killed = next(t for t in trials if t.number == number)
    assert killed.state == TrialState.FAIL and "SIGKILL" in killed.user_attrs["reason"]


def test_a_knob_that_raises_in_every_trial_stops_the_study_with_exit_1(cli_home: CliHome) -> None:
    result = cli_home.run("study", "start", "--name", "boom", "--n-trials", "4", *SLOW,
                          "--plugin", str(PLUGINS / "raises_in_apply.py"))
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result.stderr)
    assert "the baseline failed 3 times" in line and "exploding" in line
    # bracketed text is a reason, not console markup: it reaches the trial lines intact
    assert "[enforce fail at alloc_cpu.cpp:127]" in result.stderr
    trials = assert_sound(cli_home, "boom")
    assert [t.state for t in trials if t.user_attrs.get("autotune_status") != "surplus"] == [TrialState.FAIL] * 3
    assert Store(cli_home.path / "autotune.db").get_study("boom")["status"] == "failed"


def test_2_a_study_in_which_no_trial_completed_exits_1(cli_home: CliHome) -> None:
    result = cli_home.run("study", "start", "--name", "none", "--n-trials", "2", "--target", "0.9999",
                          "--budget-steps", "2", *QUICK[2:])
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result.stderr)
    assert "study 'none': no trial completed (2 pruned, 0 failed)" in line
    assert Store(cli_home.path / "autotune.db").get_study("none")["status"] == "failed"
    assert_sound(cli_home, "none")


def test_13_an_exported_config_repeats_the_studys_run(cli_home: CliHome, tmp_path: Path) -> None:
    done = cli_home.run("study", "start", "--name", "ex", "--n-trials", "1", "--space", "quick",
                        "--budget-epochs", "2", "--confirm", "0", "--no-tui")
    assert done.returncode == 0, done.stderr
    best = tmp_path / "best.toml"
    assert cli_home.run("study", "export", "ex", "-o", str(best)).returncode == 0
    result = cli_home.run("trial", "run", "--config", str(best), "--json")
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    study = optuna.load_study(study_name="ex", storage=f"sqlite:///{cli_home.path / 'studies.db'}")
    assert data["budget"] == "2 epochs" and data["target"] == study.user_attrs["target"]
    # validated as often as in the study (4 times an epoch), so time to target means the same
    assert data["time_to_target"] is not None and len(data["curve"]) == len(study.trials[0].intermediate_values)


def test_18_a_storage_deleted_under_a_running_study_stops_it(cli_home: CliHome) -> None:
    proc = cli_home.start("study", "start", "--name", "gone", "--n-trials", "4", *SLOW)
    cli_home.live_pid("gone", 1)
    for path in cli_home.path.glob("studies.db*"):
        path.unlink()
    code, _, err = finished(proc)
    assert code == 1, err[-3000:]
    (line,) = error_lines(err)
    assert "studies.db was deleted or replaced while it ran" in line
    assert Store(cli_home.path / "autotune.db").get_study("gone")["status"] == "failed"
    assert not (cli_home.path / "studies.db").exists()  # not recreated behind the user's back
