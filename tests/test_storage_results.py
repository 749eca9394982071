"""autotune.storage (readers, results, export) on real Optuna SQLite studies shaped like the runner's."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from autotune.storage import reading, results
from autotune.storage.trial_row import row_from_frozen
from autotune.settings import load_config_file
from autotune.errors import UsageError
from autotune.storage.export import export_config

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTS = {
    "batch_size": IntDistribution(16, 512, log=True),
    "optimizer": CategoricalDistribution(["sgd", "adamw"]),
    "learning_rate": FloatDistribution(1e-4, 0.3, log=True),
}
T0 = datetime(2026, 11, 1, 12, 0, 0)


def trial(
    number: int, state: TrialState, values: list[float] | None, *, status: str = "ok",
    reason: str | None = None, baseline: bool = False, seconds: float = 10.0,
    params: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
    intermediate: dict[int, float] | None = None,
) -> FrozenTrial:
    params = params or {"batch_size": 64 * (1 + number % 4), "optimizer": ["sgd", "adamw"][number % 2],
                        "learning_rate": 0.001 * (1 + number)}
    attrs: dict[str, Any] = {
        "settings": {**params, "precision": "fp32", "workers": 0, "note": 'say "hi"'},
        "baseline": baseline,
        "log_tail": f"trial {number} log",
        **(metrics or {"throughput": 1000.0 + 100 * number, "val_accuracy": 0.9}),
    }
    if state != TrialState.RUNNING:
        attrs["autotune_status"] = status
    if reason:
        attrs["reason"] = reason
    start = T0 + timedelta(seconds=20 * number)
    return FrozenTrial(
        number=number, state=state, value=None, values=values, datetime_start=start,
        datetime_complete=None if state == TrialState.RUNNING else start + timedelta(seconds=seconds),
        params=params, distributions={k: DISTS[k] for k in params}, user_attrs=attrs, system_attrs={},
        intermediate_values=intermediate or {}, trial_id=number,
    )


def make_study(tmp_path: Path, name: str, objective: str, directions: list[str],
               trials: list[FrozenTrial], n_trials: int = 10) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name=name, storage=url, directions=directions)
    study.set_user_attr("autotune", {"workload": "digits", "objective": objective, "target": 0.9,
                                     "budget": "5 epochs", "n_trials": n_trials, "seed": 0, "device": "cpu"})
    study.set_user_attr("hardware", {"device_type": "cpu"})
    study.set_user_attr("baseline_number", 0)
    study.add_trials(trials)
    return url, study


@pytest.fixture
def tta(tmp_path: Path) -> tuple[str, optuna.Study]:
    """time-to-accuracy: baseline 40 s, best 10 s (trial 3), a pruned, a failed and a running trial."""
    return make_study(tmp_path, "tta", "time-to-accuracy", ["minimize"], [
        trial(0, TrialState.COMPLETE, [40.0], baseline=True, intermediate={0: 0.5, 1: 0.2}),
        trial(1, TrialState.COMPLETE, [25.0]),
        trial(2, TrialState.PRUNED, None, status="pruned", reason="error rate 0.4 at eval 1 above median",
              intermediate={0: 0.6, 1: 0.4}),
        trial(3, TrialState.COMPLETE, [10.0], seconds=30.0),
        trial(4, TrialState.FAIL, None, status="oom", reason="out of memory at batch_size 512"),
        trial(5, TrialState.COMPLETE, [math.inf]),
        trial(6, TrialState.RUNNING, None),
    ])


OPENERS = ["open_study", "open_view"]


def opened(opener: str, url: str, name: str) -> Any:
    return getattr(reading, opener)(url, name)


@pytest.mark.parametrize("opener", OPENERS)
def test_open_missing_file_or_study(tmp_path: Path, opener: str) -> None:
    url = f"sqlite:///{tmp_path / 'nope.db'}"
    with pytest.raises(UsageError, match=r"^no study 'x' in sqlite:///.*nope\.db"):
        opened(opener, url, "x")
    assert not (tmp_path / "nope.db").exists()
    other, _ = make_study(tmp_path, "real", "throughput", ["maximize"], [])
    with pytest.raises(UsageError, match="no study 'x' in sqlite:///"):
        opened(opener, other, "x")


def test_open_view_reads_like_optuna(tta: tuple[str, optuna.Study]) -> None:
    """SqliteStudy: Optuna's name, directions and user attrs, without SQLAlchemy."""
    url, study = tta
    view = reading.open_view(url, "tta")
    assert isinstance(view, reading.SqliteStudy)
    assert (view.study_name, view.directions, view.user_attrs) == (
        study.study_name, study.directions, study.user_attrs)
    study.set_user_attr("confirmation", {"speedup_median": 3.5})
    assert view.user_attrs["confirmation"] == {"speedup_median": 3.5}


@pytest.mark.parametrize("opener", OPENERS)
def test_trial_rows_follow_the_contract(tta: tuple[str, optuna.Study], opener: str) -> None:
    url, _ = tta
    rows = reading.trial_rows(opened(opener, url, "tta"))
    assert [r.number for r in rows] == list(range(7))
    assert [r.state for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE", "FAIL", "COMPLETE", "RUNNING"]
    base, pruned, failed, running = rows[0], rows[2], rows[4], rows[6]
    assert base.baseline and base.values == [40.0] and base.autotune_status == "ok" and base.reason is None
    assert base.params == {"batch_size": 64, "optimizer": "sgd", "learning_rate": 0.001}
    assert base.settings["precision"] == "fp32" and base.settings["batch_size"] == 64
    assert base.metrics == {"throughput": 1000.0, "val_accuracy": 0.9}
    assert base.intermediate == {0: 0.5, 1: 0.2}
    assert base.duration == pytest.approx(10.0)
    assert base.log_tail == "trial 0 log"
    assert pruned.autotune_status == "pruned" and pruned.reason.startswith("error rate 0.4")
    assert failed.autotune_status == "oom" and failed.values is None
    assert rows[5].values == [math.inf]
    assert running.duration is None and running.autotune_status is None
    assert json.dumps(base.to_dict())


def test_direct_sqlite_reader_matches_optuna(tta: tuple[str, optuna.Study]) -> None:
    url, _ = tta
    fast = reading.trial_rows(reading.open_study(url, "tta"))
    public = [row_from_frozen(t) for t in optuna.load_study(study_name="tta", storage=url).get_trials()]
    assert fast == public
    assert [r.distributions for r in fast] == [r.distributions for r in public]


@pytest.mark.parametrize("opener", [*OPENERS, "load_study"])
def test_trial_rows_are_incremental(tta: tuple[str, optuna.Study], opener: str) -> None:
    """Finished rows are converted once; new trials and a trial that finished show up.
    (load_study: no direct reader, Optuna's public API.)"""
    url, writer = tta
    study = (optuna.load_study(study_name="tta", storage=url) if opener == "load_study"
             else opened(opener, url, "tta"))
    first = reading.trial_rows(study)
    writer.add_trial(trial(7, TrialState.COMPLETE, [8.0]))
    writer.tell(6, 12.0)
    second = reading.trial_rows(study)
    assert [r.number for r in second] == list(range(8))
    assert all(a is b for a, b in zip(first[:6], second[:6]))  # finished rows reused, not rebuilt
    assert second[6].state == "COMPLETE" and second[6].values == [12.0]
    assert second[7].values == [8.0]
    assert [r.number for r in reading.trial_rows(study, since_number=6)] == [6, 7]


@pytest.mark.parametrize("opener", OPENERS)
def test_best_so_far_and_summary_minimize(tta: tuple[str, optuna.Study], opener: str) -> None:
    url, _ = tta
    study = opened(opener, url, "tta")
    assert results.best_so_far(study) == [(0, 40.0), (1, 25.0), (2, 25.0), (3, 10.0), (4, 10.0), (5, 10.0)]
    store_row = {"status": "running", "n_trials": 10, "started_at": None, "finished_at": None}
    now = (T0 + timedelta(seconds=200)).timestamp()
    s = results.summary(study, store_row, now=now)
    assert (s["done"], s["total"], s["complete"], s["pruned"], s["failed"], s["running"]) == (6, 10, 4, 1, 1, 1)
    assert s["best_number"] == 3 and s["best_value"] == 10.0
    assert s["speedup"] == pytest.approx(4.0)  # baseline 40 s / best 10 s
    assert s["elapsed"] == pytest.approx(200.0)
    mean = (10 * 5 + 30) / 6
    assert s["eta"] == pytest.approx(4 * mean)
    assert s["state"] == "running" and s["objective"] == "time-to-accuracy" and s["target"] == 0.9


def test_summary_maximize_speedup(tmp_path: Path) -> None:
    url, _ = make_study(tmp_path, "thr", "throughput", ["maximize"], [
        trial(0, TrialState.COMPLETE, [1000.0], baseline=True),
        trial(1, TrialState.COMPLETE, [2500.0]),
        trial(2, TrialState.COMPLETE, [1800.0]),
    ])
    s = results.summary(reading.open_study(url, "thr"), None)
    assert s["best_number"] == 1 and s["speedup"] == pytest.approx(2.5)
    assert s["state"] == "finished" and s["eta"] is None


@pytest.mark.parametrize("opener", OPENERS)
def test_pareto_front_and_recommendation(tmp_path: Path, opener: str) -> None:
    points = [(0.95, 1000.0, 2e8), (0.97, 900.0, 2e8), (0.94, 3000.0, 1e8), (0.96, 2000.0, 3e8),
              (0.90, 800.0, 3e8), (0.96, 2000.0, 2e8)]
    url, writer = make_study(tmp_path, "par", "pareto", ["maximize", "maximize", "minimize"], [
        trial(i, TrialState.COMPLETE, list(p), baseline=i == 0) for i, p in enumerate(points)
    ])
    study = opened(opener, url, "par")
    front = [r.number for r in results.pareto_front(study)]
    assert front == sorted(t.number for t in writer.best_trials) == [1, 2, 5]
    assert results.best_so_far(study) == []
    s = results.summary(study, None)
    # Most throughput among front trials at least as accurate as the baseline (0.95): trial 5.
    assert s["best_number"] == 5 and s["speedup"] == pytest.approx(2.0)


def test_importances(tmp_path: Path, tta: tuple[str, optuna.Study]) -> None:
    url, _ = tta
    assert results.importances(reading.open_study(url, "tta")) != {}  # 4 COMPLETE trials
    few, _ = make_study(tmp_path, "few", "accuracy", ["maximize"], [
        trial(0, TrialState.COMPLETE, [0.9]), trial(1, TrialState.COMPLETE, [0.8]),
    ])
    assert results.importances(reading.open_study(few, "few")) == {}
    many = [trial(i, TrialState.COMPLETE, [0.8 + (i % 4) * 0.03]) for i in range(20)]
    url2, _ = make_study(tmp_path, "many", "accuracy", ["maximize"], many)
    fast = results.importances(reading.open_view(url2, "many"))
    public = results.importances(optuna.load_study(study_name="many", storage=url2))
    assert set(fast) == set(DISTS) and sum(fast.values()) == pytest.approx(1.0)
    assert fast == pytest.approx(public)


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_export_round_trip(tta: tuple[str, optuna.Study], tmp_path: Path, fmt: str, opener: str) -> None:
    url, _ = tta
    study = opened(opener, url, "tta")
    text = export_config(study, fmt=fmt)
    path = tmp_path / f"best.{fmt}"
    path.write_text(text)
    config = load_config_file(path)
    assert config["workload"] == "digits"
    best = reading.trial_rows(study)[3]
    assert config["settings"] == best.settings
    if fmt == "toml":
        assert text.startswith("# autotune: trial 3 of study 'tta'")
    else:
        assert json.loads(text)["trial"] == 3 and json.loads(text)["value"] == 10.0


def test_export_other_trial_and_errors(tta: tuple[str, optuna.Study], tmp_path: Path) -> None:
    url, writer = tta
    study = reading.open_study(url, "tta")
    path = tmp_path / "t1.toml"
    path.write_text(export_config(study, trial=1))
    assert load_config_file(path)["settings"]["learning_rate"] == pytest.approx(0.002)
    assert "trial 1 of" in export_config(study, trial=writer.trials[1])
    with pytest.raises(UsageError, match="no trial 99"):
        export_config(study, trial=99)
    with pytest.raises(UsageError, match="toml or json"):
        export_config(study, fmt="yaml")
    empty, _ = make_study(tmp_path, "empty", "accuracy", ["maximize"], [])
    with pytest.raises(UsageError, match="no complete trial"):
        export_config(reading.open_study(empty, "empty"))


def test_summary_device_falls_back_to_the_fingerprint(tmp_path: Path) -> None:
    url, study = make_study(tmp_path, "auto", "accuracy", ["maximize"], [trial(0, TrialState.COMPLETE, [0.9])])
    attrs = dict(study.user_attrs["autotune"], device=None)  # started without --device
    study.set_user_attr("autotune", attrs)
    study.set_user_attr("hardware", {"device_type": "cuda"})
    assert results.summary(reading.open_study(url, "auto"), None)["device"] == "cuda"
