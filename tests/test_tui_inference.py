"""An inference study (serving a trained model) in `study show`, its `--json` and the terminal UI:
latency, size, the metric's drop, the accuracy guard and the Pareto front of latency vs drop.

The study is written through Optuna's own storage API into a real SQLite file, with the study and
trial attributes a real `study start --task inference` run recorded (copied from one on the digits
model, with this module's constant_output test plugin): running one takes 20 s, writing it 0.3 s.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, IntDistribution
from rich.console import Console

from autotune.cli import cli
from autotune.spec import StudySpec
from autotune.storage.local import Store
from autotune.storage.results import inference_front, latency_drop_front
from autotune.storage.trial_row import TrialRow
from autotune.tui.app import AutotuneApp
from autotune.tui.screens.study import StudyScreen
from autotune.tui.screens.trial import TrialScreen
from autotune.tui.widgets.latency_front import LatencyFront
from autotune.tui.widgets.study_header import StudyHeader
from autotune.tui.widgets.trials_table import TrialsTable

optuna.logging.set_verbosity(optuna.logging.WARNING)
SIZE = (140, 45)
NAME = "serve"
REFERENCE = 0.6183844011142061  # the unoptimized model's accuracy
BOUND = 0.6122005571030641  # metric.guard(REFERENCE, 0.01)
DISTRIBUTIONS = {"int8_dynamic": CategoricalDistribution([False, True]), "serve_threads": IntDistribution(1, 2),
                 "constant_output": CategoricalDistribution([False, True])}
BASELINE = {"serve_precision": "fp32", "int8_dynamic": False, "int8_static": False, "serve_channels_last": False,
            "serve_batch_size": 8, "serve_threads": 2, "serve_compile": "none", "constant_output": False}
INFEASIBLE = ("infeasible: accuracy 0.1058, 82.88% worse than the unoptimized model's 0.6184 "
              "(the guard allows 1.0%)")
# number: (changed settings, latency p50 s, p95 s, model bytes, accuracy); None: the trial failed
TRIALS: dict[int, Any] = {
    0: ({}, 0.0462, 0.0495, 493031, REFERENCE),
    1: ({"int8_dynamic": True}, 0.0301, 0.0330, 151_200, 0.6160),  # within the guard, slower than 3
    2: ({"constant_output": True}, 4.49e-06, 1.01e-05, 493031, 0.10584958217270195),  # fastest, useless
    3: ({"serve_threads": 1}, 0.000345, 0.000451, 493031, REFERENCE),  # the best
    4: ({"serve_threads": 1, "int8_dynamic": True}, 0.000359, 0.000411, 151_200, 0.6378),  # better accuracy
    5: ({"int8_dynamic": True, "serve_threads": 1}, None, None, None, None),
}


def trial(number: int) -> optuna.trial.FrozenTrial:
    """Trial `number` of TRIALS with the user attrs autotune.study.objective records for it."""
    changed, p50, p95, size, accuracy = TRIALS[number]
    settings = {**BASELINE, **changed}
    params = {k: settings[k] for k in DISTRIBUTIONS}
    attrs: dict[str, Any] = {"settings": settings, "baseline": number == 0, "runner": "vm:1", "slot": number,
                             "log_tail": "served", "curve": []}
    if p50 is None:
        attrs.update(autotune_status="fail", reason="serving failed: RuntimeError: out of memory")
        return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params,
                                         distributions=DISTRIBUTIONS, user_attrs=attrs)
    drop = (REFERENCE - accuracy) / REFERENCE  # Metric.drop for a maximized metric
    feasible = drop <= 0.01
    attrs.update({
        "autotune_status": "ok", "latency_p50": p50, "latency_p95": p95, "throughput": 8 / p50,
        "peak_memory_bytes": 18_903_040, "model_bytes": size, "metric_value": accuracy,
        "metrics": {"val_loss": 1.9046, "accuracy": accuracy}, "val_accuracy": accuracy, "val_samples": 359,
        "notes": {"serve_threads": settings["serve_threads"]}, "wall_time": 1.7,
        "machine": {"load_avg": 0.58, "steal": 0.0, "others": 0.03}, "metric_drop": drop, "feasible": feasible,
    })
    if not feasible:
        attrs["reason"] = INFEASIBLE
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE, values=[p50], params=params, distributions=DISTRIBUTIONS,
        user_attrs=attrs, system_attrs={"constraints:accuracy": 0.0 if feasible else drop, "constraints:memory": 0.0},
    )


@pytest.fixture
def serve_home(autotune_home: Path, tmp_path: Path) -> Path:
    """AUTOTUNE_HOME holding the finished inference study NAME, as autotune.study.runner stores one."""
    autotune_home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{autotune_home / 'studies.db'}"
    spec = StudySpec(name=NAME, workload="digits", space="space.toml", objective="latency", n_trials=6,
                     seed=3, confirm=1, explain=False, task="inference", checkpoint=str(tmp_path / "digits.pt"),
                     iterations=5, workdir=str(tmp_path))
    study = optuna.create_study(study_name=NAME, storage=url, directions=["minimize"])
    study.set_user_attr("autotune", {**spec.to_dict(), "budget_text": "5 timed calls", "directions": ["minimize"]})
    study.set_user_attr("hardware", {"device_type": "cpu", "device_name": "AMD EPYC", "cpu_count": 2,
                                     "torch_version": "2.14.1", "precisions": ["fp32", "bf16"]})
    study.set_user_attr("metric", {"name": "accuracy", "direction": "maximize"})
    study.set_user_attr("reference_metric", REFERENCE)
    study.set_user_attr("target", BOUND)
    pair = {"seed": 1003, "baseline": {"status": "ok", "value": 0.0462}, "best": {"status": "ok", "value": 0.000343},
            "speedup": 0.0462 / 0.000343}
    study.set_user_attr("confirmation", {  # autotune.study.confirm's record of one paired re-run
        "runs": [pair], "best_number": 3, "baseline_number": 0, "repeats": 1, "valid_pairs": 1,
        "lower_bound_pairs": 0, "speedup_median": pair["speedup"], "speedup_min": pair["speedup"],
        "speedup_max": pair["speedup"], "interval": [pair["speedup"], pair["speedup"]], "coverage": 0.0,
        "confirmed": False, "best_value_median": 0.000343, "baseline_value_median": 0.0462,
    })
    with warnings.catch_warnings():  # experimental in Optuna's eyes, as the runner says too
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["latency_p50_seconds"])
    study.add_trials([trial(n) for n in sorted(TRIALS)])
    store = Store(autotune_home / "autotune.db")
    store.put_study(NAME, storage=url, workload="digits", space="space.toml", objective="latency", n_trials=6,
                    spec=spec.to_dict(), status="running")
    store.set_study_status(NAME, "finished")
    store.close()
    return autotune_home


# --- the Pareto front ---------------------------------------------------------------------------


def test_the_front_keeps_what_nothing_beats_on_both_latency_and_drop() -> None:
    points = [(0, 0.046, 0.0), (1, 0.030, 0.004), (2, 4e-6, 0.83), (3, 0.00035, 0.0), (4, 0.00036, -0.03)]
    assert latency_drop_front(points) == [2, 3, 4]  # fastest first
    assert latency_drop_front([]) == []


def test_ties_on_both_stay_on_the_front_and_ties_on_one_do_not() -> None:
    # 1 and 2 are equal on both: neither dominates. 3 is as fast as 1 but drops more; 4 drops as
    # little as 1 but is slower.
    assert latency_drop_front([(1, 0.01, 0.0), (2, 0.01, 0.0), (3, 0.01, 0.02), (4, 0.02, 0.0)]) == [1, 2]
    # equal drop, faster wins; equal latency, lower drop wins, whatever the numbering
    assert latency_drop_front([(7, 0.02, 0.01), (8, 0.01, 0.01)]) == [8]
    assert latency_drop_front([(7, 0.01, 0.01), (8, 0.01, -0.01)]) == [8]


def test_missing_and_non_finite_values_are_left_out() -> None:
    points = [(0, None, 0.0), (1, 0.01, None), (2, math.nan, 0.0), (3, 0.02, math.inf), (4, 0.05, 0.0)]
    assert latency_drop_front(points) == [4]


def row(number: int, state: str, latency: float | None, drop: float | None, feasible: bool = True) -> TrialRow:
    metrics = {k: v for k, v in (("latency_p50", latency), ("metric_drop", drop)) if v is not None}
    return TrialRow(number=number, state=state, autotune_status=None, params={}, settings={}, metrics=metrics,
                    reason=None, duration=1.0, baseline=number == 0, intermediate={},
                    values=[latency] if latency is not None else None, feasible=feasible)


def test_the_inference_front_counts_infeasible_trials_and_only_complete_ones() -> None:
    rows = [row(0, "COMPLETE", 0.05, 0.0), row(1, "COMPLETE", 0.001, 0.5, feasible=False),
            row(2, "PRUNED", 0.0001, 0.0), row(3, "RUNNING", None, None), row(4, "COMPLETE", 0.01, 0.0),
            row(5, "COMPLETE", 0.02, None)]
    # 1 is past the guard but faster than anything that keeps more accuracy: it shows the trade-off
    assert inference_front(rows) == [1, 4]


# --- study show ---------------------------------------------------------------------------------


def test_study_show_json_gives_the_front_and_the_text_marks_it(serve_home: Path) -> None:
    shown = CliRunner().invoke(cli, ["study", "show", NAME, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["pareto"] == [2, 3, 4]  # by latency; 2 is infeasible and on it
    assert data["summary"]["task"] == "inference" and data["summary"]["best_number"] == 3
    assert data["summary"]["guard"] == {"reference": REFERENCE, "bound": BOUND, "max_drop": 0.01}
    text = CliRunner().invoke(cli, ["study", "show", NAME])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    marked = {int(line.split()[0].rstrip("*")) for line in lines if line[:1].isdigit() and line.rstrip().endswith("◆")}
    assert marked == {2, 3, 4}
    listing = lines[lines.index(next(l for l in lines if l.startswith("Pareto front (latency vs metric drop)"))) + 1:]
    assert [int(line.split()[0]) for line in listing[:3]] == [2, 3, 4]
    assert "past the guard" in listing[0] and "0.00449 ms" in listing[0] and "0.345 ms" in listing[1]


# --- the terminal UI ----------------------------------------------------------------------------


def rendered(widget: Any, width: int = 200) -> str:
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


async def settled(app: AutotuneApp, pilot: Any) -> None:  # noqa: ANN401
    """Wait for a poll to reach the study screen (no sleeping on a guess)."""
    for _ in range(500):
        await pilot.pause(0.02)
        if app.polls >= 1 and isinstance(app.screen, StudyScreen):
            break
    else:
        raise AssertionError(f"no poll applied (polls={app.polls})")
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_the_tui_shows_an_inference_study_as_serving(serve_home: Path) -> None:
    app = AutotuneApp(study=NAME, interval=5.0)
    async with app.run_test(size=SIZE) as pilot:
        await settled(app, pilot)
        screen = app.screen
        header = str(screen.query_one(StudyHeader).content)
        assert "serving digits" in header and "objective latency p50 at batch 1" in header
        assert "guard accuracy>=0.6122 (at most 1.0% worse than unoptimized 0.6184)" in header
        assert "best 0.345 ms (#3)" in header and "6/6 trials (5 ok, 0 pruned, 1 failed)" in header

        table = screen.query_one(TrialsTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == ["#", "state", "settings", "p50", "p95", "size", "drop", "guard", "front", "time", "reason"]
        cell = {n: [str(c) for c in table.get_row(str(n))] for n in TRIALS}
        assert cell[0][:9] == ["0 b", "complete", "t=2", "46.2 ms", "49.5 ms", "481 KiB", "0%", "ok", ""]
        assert cell[1][2:9] == ["int8-dyn t=2", "30.1 ms", "33.0 ms", "148 KiB", "0.39%", "ok", ""]
        assert cell[2][3] == "0.00449 ms" and cell[2][6] == "83%" and cell[2][7:9] == ["✗ past", "◆"]
        assert cell[2][-1] == INFEASIBLE
        assert cell[3][0] == "3★" and cell[3][8] == "◆" and cell[4][6] == "-3.1%" and cell[4][8] == "◆"
        assert cell[5][1] == "fail" and cell[5][3:9] == ["-", "-", "-", "-", "-", ""]

        front = screen.query_one(LatencyFront)
        assert front.display and front.border_title == "Pareto front: latency p50 vs metric drop"
        lines = rendered(front).splitlines()
        assert lines[0].split() == ["#", "latency", "p50", "drop", "size"]
        assert lines[1].split() == ["2", "0.00449", "ms", "83%", "481", "KiB", "✗", "guard"]
        assert lines[2].split() == ["3★", "0.345", "ms", "0%", "481", "KiB"]
        assert lines[3].split() == ["4", "0.359", "ms", "-3.1%", "148", "KiB"]
        assert lines[4].startswith("guard: accuracy>=0.6122 (at most 1.0% worse")
        assert screen.query_one("#progress-plot").border_title == "best so far (latency) by trial"
        assert screen.query_one("#running").border_title == "running"

        table.move_cursor(row=2)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, TrialScreen) and app.screen.row.number == 2
        measured = rendered(app.screen.query_one("#trial-metrics"))
        for line in ("latency p50 (batch 1)  0.00449 ms", "latency p95 (batch 1)  0.0101 ms",
                     "throughput (batch 8)   1,781,737 samples/s", "model size             481 KiB",
                     "accuracy               0.1058", "metric drop            83%",
                     "guard                  past it: more than 1.0% worse (infeasible, never the best)"):
            assert line in measured, measured
        assert not app.screen.query_one("#trial-curve").display  # no validation curve when serving
        assert app.screen.query_one("#trial-metrics").border_title == "measured serving it"
