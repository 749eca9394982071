"""The answer a study confirms (autotune.study.answer): judged at the run's length, riders
dropped, systems knobs fitted by paired step time, the speedup in two factors.

Every study here runs for real: trial processes, SQLite, `study start` in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import optuna
import pytest

from autotune.spec import StudySpec
from autotune.storage.results import summary
from autotune.storage.local import Store
from autotune.study.paired import PAIRS
from autotune.study.prepare import prepare
from autotune.study.riders import drop_riders
from autotune.study.runner import StudyRunner
from autotune.study.systems import candidate_values, fit_systems
from autotune.tui.widgets.verdict import verdict_text

ROOT = Path(__file__).resolve().parent.parent
DRAG = str(ROOT / "tests" / "plugin_files" / "drag.py")


def _space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return str(path)


def _study(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`study start ... --json` in a fresh process and home: the process and its report."""
    env = {**os.environ, "AUTOTUNE_HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "autotune.cli", "study", "start", "--no-tui", "--json", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    return proc, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}


def _cli(tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "AUTOTUNE_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-m", "autotune.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _text(tmp_path: Path, name: str) -> str:
    return _cli(tmp_path, "study", "show", name)


def test_a_recipe_that_wins_a_weak_target_and_then_stalls_is_not_confirmed(tmp_path: Path) -> None:
    """Plain SGD on noisy regression: learning rate 0.3 reaches the baseline's 40-step value in a
    few steps and then stalls on its noise floor, far above where the baseline's 0.01 ends 400
    steps later. The search finds it fastest; the study does not confirm it and says why."""
    space = _space(tmp_path, 'only = ["learning_rate"]\n[knobs.learning_rate]\nlow = 0.001\nhigh = 0.5\nlog = true\n')
    proc, report = _study(tmp_path, "--name", "hot", "--workload", "tests.workloads_for_tests:stalling",
                          "--space", space, "--budget-steps", "40", "--n-trials", "2", "--seed", "0",
                          "--enqueue", "learning_rate=0.3", "--confirm", "2")
    assert proc.returncode == 0, proc.stderr
    assert report["best"]["settings"]["learning_rate"] == 0.3  # it won the search
    assert report["speedup_in_search"] > 1.5
    answer = report["answer"]
    assert answer["trial"] is None and answer["settings"] == report["baseline"]["settings"]
    (rejected,) = answer["rejected"]
    assert rejected["trial"] == 1 and rejected["horizon"]["holds"] is False
    assert rejected["horizon"]["length"] == {"steps": 400}
    assert rejected["horizon"]["final"] > rejected["horizon"]["target"]  # it ends short of the baseline
    assert "short-horizon bias" in rejected["why"]
    assert "confirmation" not in report and "speedups" not in report
    shown = _text(tmp_path, "hot")
    assert "trial 1 not taken" in shown and "short-horizon bias" in shown
    # the terminal UI's verdict says it too, from the stored study
    study = optuna.load_study(study_name="hot", storage=f"sqlite:///{tmp_path / 'home' / 'studies.db'}")
    verdict = verdict_text(summary(study, None)).plain
    assert "trial 1 not taken" in verdict and "short-horizon bias" in verdict
    assert "no speedup: the search's best did not hold at your run's length" in verdict
    assert "--confirm 0" not in verdict  # confirmation ran nothing because nothing held


@pytest.fixture
def runner(tmp_path: Path) -> StudyRunner:
    """A runner over the regression workload with the drag knob (systems; the baseline drags
    20 ms a step), its study open."""
    spec = StudySpec(name="drag", workload="tests.workloads_for_tests:regression", device="cpu", n_trials=2,
                     seed=0, storage=f"sqlite:///{tmp_path / 'd.db'}", budget={"steps": 30},
                     plugin_paths=(DRAG,), workdir=str(ROOT),
                     space=_space(tmp_path, 'only = ["learning_rate", "drag"]\n'))
    runner = StudyRunner(prepare(spec), Store(tmp_path / "store.db"))
    runner.open()
    return runner


def test_the_search_takes_the_statistical_knobs_and_the_systems_ones_are_fitted_after(runner: StudyRunner) -> None:
    space = runner.context.space
    assert [p.name for p in space.params] == ["learning_rate"]
    assert [p.name for p in space.fitted] == ["drag_ms"]
    assert candidate_values(space.fitted[0], 20) == [0, 40]
    fit = fit_systems(runner.launcher, runner.events, dict(runner.baseline), space.fitted, seed=7)
    rows = {row["to"]: row for row in fit["tried"]}
    assert rows[0]["kept"] and rows[0]["faster"] and rows[0]["same_learning"] and len(rows[0]["ratios"]) == PAIRS
    assert not rows[40]["kept"] and rows[40]["ratio"] < 1.0
    assert fit["changed"] == {"drag_ms": 0} and fit["settings"]["drag_ms"] == 0
    assert fit["same_training"]["ratio"] > 1.0 and fit["same_training"]["faster"]


def test_one_stage_searches_every_knob_together(tmp_path: Path) -> None:
    spec = StudySpec(name="one", workload="tests.workloads_for_tests:regression", device="cpu", staged=False,
                     plugin_paths=(DRAG,), workdir=str(ROOT), storage=f"sqlite:///{tmp_path / 'o.db'}",
                     space=_space(tmp_path, 'only = ["learning_rate", "drag"]\n'))
    space = prepare(spec).space
    assert [p.name for p in space.params] == ["learning_rate", "drag_ms"] and space.fitted == []


def test_a_planted_slow_setting_is_dropped_as_a_rider(runner: StudyRunner) -> None:
    """A trial that carries drag_ms=40 (slower than the baseline's 20): reverted, its steps are
    faster, so it goes; the answer is the baseline's setting."""
    baseline = dict(runner.baseline)
    settings, rows = drop_riders(runner.launcher, runner.events, {**baseline, "drag_ms": 40}, baseline,
                                 margin=0.05, seed=11)
    (row,) = rows
    assert row["knob"] == "drag" and row["kind"] == "systems" and row["by"] == "step time"
    assert row["dropped"] and row["ratio"] < 1.0 and "not faster" in row["why"]
    assert settings["drag_ms"] == 20
    # a setting that is faster stays
    settings, rows = drop_riders(runner.launcher, runner.events, {**baseline, "drag_ms": 0}, baseline,
                                 margin=0.05, seed=11)
    assert not rows[0]["dropped"] and settings["drag_ms"] == 0


def test_a_staged_study_reports_the_same_training_and_the_recipe_speedups(tmp_path: Path) -> None:
    space = _space(tmp_path, 'only = ["learning_rate", "drag"]\n[knobs.learning_rate]\nlow = 0.003\nhigh = 0.05\n'
                             'log = true\n')
    proc, report = _study(tmp_path, "--name", "two", "--workload", "tests.workloads_for_tests:regression",
                          "--space", space, "--plugin", DRAG, "--budget-steps", "40",
                          "--n-trials", "3", "--seed", "1", "--confirm", "3", "--no-explain",
                          "--enqueue", "learning_rate=0.03")
    assert proc.returncode == 0, proc.stderr
    answer, speedups = report["answer"], report["speedups"]
    assert answer["systems"]["changed"] == {"drag_ms": 0}
    assert answer["settings"]["drag_ms"] == 0
    assert speedups["systems"] == {"drag_ms": 0} and speedups["same_training"] > 1.0
    assert speedups["total"] == pytest.approx(speedups["same_training"] * speedups["recipe"])
    # every trial of the search ran the baseline's drag: the systems stage alone changed it
    assert {t["settings"]["drag_ms"] for t in [report["best"], report["baseline"]]} == {20}
    # what a user takes home is the answer, not the trial it came from
    best = json.loads(_cli(tmp_path, "study", "best", "two", "--json"))
    assert best["answer"] is True and best["settings"] == answer["settings"]
    exported = tomllib.loads(_cli(tmp_path, "study", "export", "two"))
    assert exported["settings"]["drag_ms"] == 0 and exported["speedups"]["same_training"] > 1.0
    assert "metrics" not in exported  # the trial's would not be the answer's


def test_when_no_recipe_beats_the_baseline_the_systems_knobs_are_still_fitted(tmp_path: Path) -> None:
    """The search (learning rates 100x below the baseline's) finds nothing faster: the answer
    keeps the baseline's recipe, its systems knobs are fitted all the same, and the same
    training, faster, is confirmed and exported."""
    space = _space(tmp_path, 'only = ["learning_rate", "drag"]\n[knobs.learning_rate]\nlow = 0.00001\n'
                             'high = 0.0001\nlog = true\n')
    proc, report = _study(tmp_path, "--name", "same", "--workload", "tests.workloads_for_tests:regression",
                          "--space", space, "--plugin", DRAG, "--budget-steps", "40",
                          "--n-trials", "2", "--seed", "1", "--confirm", "3", "--no-explain",
                          "--target", "val_mse<=0.1")  # well inside the budget: every re-run reaches it
    assert proc.returncode == 0, proc.stderr
    assert report["best"]["number"] == report["baseline"]["number"]
    answer, speedups = report["answer"], report["speedups"]
    assert answer["trial"] is None and answer["rejected"] == [] and answer["riders"] == []
    assert answer["systems"]["changed"] == {"drag_ms": 0}
    assert answer["settings"] == {**report["baseline"]["settings"], "drag_ms": 0}
    assert report["confirmation"]["confirmed"] and speedups["same_training"] > 1.0
    # the recipe is the baseline's: the whole confirmed speedup is the same training
    assert speedups["recipe"] == 1.0 and speedups["same_training"] == speedups["total"]
    text = _text(tmp_path, "same")
    assert "no recipe of the search beat the baseline's: the answer keeps it and only its systems settings change" \
        in " ".join(text.split())
    assert "nothing found" not in text
    best = json.loads(_cli(tmp_path, "study", "best", "same", "--json"))
    assert best["answer"] is True and best["settings"]["drag_ms"] == 0
