"""optuna-dashboard reads a finished study through its WSGI app, as a user's browser would: the
objective is named, and pruned trials' values are in the objective's units (seconds), not the
metric's, so that they never look like wins next to completed trials."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest

optuna_dashboard = pytest.importorskip("optuna_dashboard")

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "autotune.cli"]

# Every searched trial trains at a learning rate that cannot reach the baseline's target, so the
# study holds one COMPLETE trial (the baseline) and PRUNED ones.
HOPELESS_SPACE = """
only = ["learning_rate"]
[knobs.learning_rate]
choices = [1e-7]
"""


def get(app: Any, path: str) -> Any:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


@pytest.fixture(scope="module")
def study_storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "hopeless.toml").write_text(HOPELESS_SPACE)
    env = {**os.environ, "AUTOTUNE_HOME": str(tmp / "home"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [*CLI, "study", "start", "--name", "dash", "--workload", "tests.workloads_for_tests:regression",
         "--n-trials", "3", "--no-tui", "--space", str(tmp / "hopeless.toml"), "--budget-steps", "40",
         "--confirm", "0", "--seed", "1"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return f"sqlite:///{tmp / 'home' / 'studies.db'}"


def test_the_dashboard_names_the_objective_and_shows_pruned_trials_in_seconds(study_storage: str) -> None:
    app = optuna_dashboard.wsgi(study_storage)
    summary = next(s for s in get(app, "/api/studies")["study_summaries"] if s["study_name"] == "dash")
    detail = get(app, f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["seconds_to_val_mse_target"]

    trials = {t["number"]: t for t in detail["trials"]}
    complete = [t for t in trials.values() if t["state"] == "Complete"]
    pruned = [t for t in trials.values() if t["state"] == "Pruned"]
    assert len(complete) == 1 and len(pruned) == 2
    best = complete[0]["values"][0]
    study = optuna.load_study(study_name="dash", storage=study_storage)
    baseline = next(t for t in study.trials if t.user_attrs.get("baseline"))
    assert best == pytest.approx(baseline.user_attrs["projected_time_to_target"])  # projected seconds
    for t in pruned:
        value = float(t["values"][0])  # "inf" in the JSON for a trial that never reached it
        assert value == float(t["intermediate_values"][-1]["value"])
        frozen = study.trials[t["number"]]
        if frozen.user_attrs["reason"].startswith("did not reach the target"):
            # it trained its whole budget without reaching the target: no time to it at all
            assert value == float("inf")
        else:
            # stopped once slower than the best: the projected seconds it trained without
            # reaching the target, a lower bound on its time to it
            assert value == pytest.approx(frozen.user_attrs["curve"][-1][2])
        assert value > best
    frame = study.trials_dataframe()
    assert "value_seconds_to_val_mse_target" in frame.columns
    pruned_values = frame[frame["state"] == "PRUNED"]["value_seconds_to_val_mse_target"]
    assert len(pruned_values) == 2 and (pruned_values > best).all()
