"""`study list`, `show`, `best`, `export` and the terminal UI's header read one study alike: the done
count and the best trial each come from one rule (autotune.storage.results)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from autotune.cli import cli
from autotune.storage.local import Store
from autotune.tui.app import AutotuneApp
from autotune.tui.screens.study import StudyScreen
from autotune.tui.widgets.study_header import StudyHeader

N_TRIALS = 8
DIST = {"batch_size": IntDistribution(16, 512)}


def _trial(state: TrialState, number: int, value: float | None = None, system: dict | None = None, **attrs):  # noqa: ANN003, ANN202
    attrs.setdefault("settings", {"batch_size": 16 + number})
    return create_trial(
        state=state, value=value if state == TrialState.COMPLETE else None,
        params={"batch_size": 16 + number}, distributions=DIST, user_attrs=attrs, system_attrs=system or {},
    )


@pytest.fixture
def mixed_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A finished time-to-accuracy study with every kind of trial the counting rule sees:
    complete (one of them faster but below the target: infeasible), pruned, failed, a failure
    retried by autotune (retry_of), one retried by Optuna's heartbeat callback (system attr
    failed_trial), and a surplus trial that never trained."""
    home = tmp_path / "home"
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    url = f"sqlite:///{home / 'studies.db'}"
    home.mkdir()
    study = optuna.create_study(study_name="mixed", storage=url, direction="minimize")
    study.set_user_attr("autotune", {"objective": "time-to-accuracy", "workload": "digits", "n_trials": N_TRIALS,
                                     "budget_text": "5 epochs"})
    study.set_user_attr("target", 0.9)
    trials = [
        _trial(TrialState.COMPLETE, 0, 10.0, baseline=True, autotune_status="ok"),
        _trial(TrialState.COMPLETE, 1, 4.0, autotune_status="ok"),
        _trial(TrialState.COMPLETE, 2, 3.0, autotune_status="ok", feasible=False),
        _trial(TrialState.PRUNED, 3, autotune_status="pruned", reason="pruned by the median pruner"),
        _trial(TrialState.FAIL, 4, autotune_status="killed", reason="stopped by a forced daemon shutdown"),
        _trial(TrialState.COMPLETE, 5, 5.0, autotune_status="ok", retry_of=4),
        _trial(TrialState.PRUNED, 6, autotune_status="surplus", reason="not run: the study already has its 8 trials"),
        _trial(TrialState.FAIL, 7, autotune_status="stale", reason="its runner died"),
        _trial(TrialState.COMPLETE, 8, 6.0, system={"failed_trial": 7, "retry_history": [7]}, autotune_status="ok"),
        _trial(TrialState.FAIL, 9, autotune_status="failed", reason="RuntimeError: boom"),
    ]
    study.add_trials(trials)
    store = Store()
    store.put_study("mixed", storage=url, workload="digits", space="quick", objective="time-to-accuracy",
                    n_trials=N_TRIALS, spec={}, status="finished")
    store.close()
    return home, url


EXPECTED_DONE = 7  # 0, 1, 2, 3, 5, 8, 9: not 4 and 7 (retried), not 6 (surplus)
EXPECTED_BEST = 1  # the fastest feasible trial: 2 is faster but missed the target


def _json(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_every_view_agrees_on_done_and_best(mixed_home: tuple[Path, str]) -> None:
    (line,) = _json("study", "list", "--json")
    shown = _json("study", "show", "mixed", "--json")
    best = _json("study", "best", "mixed", "--json")
    exported = _json("study", "export", "mixed", "--format", "json")
    assert line["done"] == shown["summary"]["done"] == EXPECTED_DONE
    assert line["n_trials"] == shown["summary"]["total"] == N_TRIALS
    assert line["best_number"] == shown["summary"]["best_number"] == best["number"] == exported["trial"] == EXPECTED_BEST
    assert line["best"] == best["values"][0] == exported["value"] == 4.0
    assert shown["summary"]["surplus"] == 1 and shown["summary"]["retried"] == 2

    app = AutotuneApp(study="mixed", interval=0.1)
    async with app.run_test(size=(160, 40)) as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            if isinstance(app.screen, StudyScreen) and app.screen.summary:
                break
        header = str(app.screen.query_one(StudyHeader).content)
    assert f"{EXPECTED_DONE}/{N_TRIALS} trials" in header
    assert f"(#{EXPECTED_BEST})" in header
