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

from autotune import tomlfile
from autotune.cli import cli
from autotune.settings import load_config_file
from autotune.storage.local import Store
from autotune.tui.app import AutotuneApp
from autotune.tui.screens.studies import StudiesScreen
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


SPEEDUPS = {"total": 3.9, "same_training": 1.21, "same_training_interval": [1.15, 1.27], "recipe": 3.22,
            "systems": {"precision": "bf16", "workers": 0}, "how": "paired step time"}
SPLIT = "speedup 3.90x = same training 1.21x (precision bf16, workers 0) x recipe 3.22x"
HOW = "same training measured by paired step time, interval 1.15-1.27x"


@pytest.fixture
def split_home(mixed_home: tuple[Path, str]) -> tuple[Path, str]:
    """Beside 'mixed' (no speedups recorded, as before them), 'split': finished, its best (trial
    1) confirmed 3.90x faster, recorded as same training 1.21x x recipe 3.22x."""
    home, url = mixed_home
    study = optuna.create_study(study_name="split", storage=url, direction="minimize")
    study.set_user_attr("autotune", {"objective": "time-to-accuracy", "workload": "digits", "n_trials": 3,
                                     "budget_text": "5 epochs"})
    study.set_user_attr("target", 0.9)
    study.add_trials([
        _trial(TrialState.COMPLETE, 0, 10.0, baseline=True, autotune_status="ok"),
        _trial(TrialState.COMPLETE, 1, 2.5, autotune_status="ok"),
        _trial(TrialState.COMPLETE, 2, 4.0, autotune_status="ok"),
    ])
    study.set_user_attr("confirmation", {
        "speedup_median": 3.9, "speedup_min": 3.5, "speedup_max": 4.2, "interval": [3.5, 4.2], "coverage": 0.75,
        "confirmed": True, "valid_pairs": 3, "repeats": 3, "best_number": 1, "baseline_number": 0})
    study.set_user_attr("speedups", SPEEDUPS)
    store = Store()
    store.put_study("split", storage=url, workload="digits", space="quick", objective="time-to-accuracy",
                    n_trials=3, spec={}, status="finished")
    store.close()
    return home, url


def _text(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())  # the console wraps long lines


def test_show_and_export_give_the_speedup_as_same_training_times_recipe(split_home: tuple[Path, str]) -> None:
    shown = _text("study", "show", "split")
    assert "confirmed speedup 3.90x" in shown and SPLIT in shown and HOW in shown
    assert "speedups=" not in shown  # its own line, not a field of the summary line
    data = _json("study", "show", "split", "--json")
    assert data["speedups"] == data["summary"]["speedups"] == SPEEDUPS

    exported = _json("study", "export", "split", "--format", "json")
    assert exported["trial"] == 1 and exported["speedups"] == SPEEDUPS
    toml = CliRunner().invoke(cli, ["study", "export", "split"], catch_exceptions=False).stdout
    assert f"# {SPLIT}" in toml
    with open(split_home[0] / "best.toml", "w") as f:
        f.write(toml)
    assert tomlfile.loads(toml)["speedups"] == SPEEDUPS
    config = load_config_file(split_home[0] / "best.toml")  # `trial run --config` still reads it
    assert config["settings"] == {"batch_size": 17} and config["workload"] == "digits"
    # another trial than the confirmed best: the factors are not its
    assert "speedups" not in _json("study", "export", "split", "--format", "json", "--trial", "2")
    # nor the best's, when what was confirmed is an answer made of it with other settings
    study = optuna.load_study(study_name="split", storage=split_home[1])
    study.set_user_attr("answer", {"settings": {"batch_size": 17, "precision": "bf16"}, "trial": 1})
    assert "speedups" not in _json("study", "export", "split", "--format", "json")
    assert SPLIT in _text("study", "show", "split")  # the study's speedup all the same
    study.set_user_attr("answer", {"settings": {"batch_size": 17}, "trial": 1})
    assert _json("study", "export", "split", "--format", "json")["speedups"] == SPEEDUPS


def test_a_study_without_speedups_shows_as_before(split_home: tuple[Path, str]) -> None:
    shown = _text("study", "show", "mixed")
    assert "same training" not in shown and "recipe" not in shown and "speedups" not in shown
    data = _json("study", "show", "mixed", "--json")
    assert data["speedups"] is None and data["summary"]["speedups"] is None
    assert "speedups" not in _json("study", "export", "mixed", "--format", "json")
    assert "same training" not in CliRunner().invoke(cli, ["study", "export", "mixed"]).stdout


def test_the_served_models_figures_carry_the_speedups(split_home: tuple[Path, str]) -> None:
    from autotune.commands.study_export import figures
    from autotune.storage.reading import open_view, trial_rows

    study = open_view(split_home[1], "split")
    rows = {r.number: r for r in trial_rows(study)}
    written = {"format": "exported_program"}
    assert figures(study, rows[1], written, "model.pt2")["speedups"] == SPEEDUPS
    assert figures(study, rows[2], written, "model.pt2")["speedups"] is None


async def _opened(app: AutotuneApp, pilot, screen: type) -> None:  # noqa: ANN001
    for _ in range(200):
        await pilot.pause(0.05)
        if isinstance(app.screen, screen) and (screen is not StudyScreen or app.screen.summary):
            break
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_the_tui_gives_the_speedup_as_same_training_times_recipe(split_home: tuple[Path, str]) -> None:
    app = AutotuneApp(interval=0.1)
    async with app.run_test(size=(200, 40)) as pilot:
        await _opened(app, pilot, StudiesScreen)
        table = app.screen.query_one("#studies")
        for _ in range(100):
            if table.row_count == 2:
                break
            await pilot.pause(0.05)
        split = [str(c) for c in table.get_row("split")]
        assert "3.90x confirmed = same training 1.21x x recipe 3.22x" in split
        assert not any("same training" in c for c in map(str, table.get_row("mixed")))

    app = AutotuneApp(study="split", interval=0.1)
    async with app.run_test(size=(200, 40)) as pilot:
        await _opened(app, pilot, StudyScreen)
        header = str(app.screen.query_one(StudyHeader).content)
        assert "confirmed speedup 3.90x (3.50x-4.20x) = same training 1.21x x recipe 3.22x" in header
        verdict = app.screen.query_one("#verdict")
        shown = " ".join(str(verdict.content).split())
        assert verdict.display and f"{SPLIT}; {HOW}" in shown

    app = AutotuneApp(study="mixed", interval=0.1)
    async with app.run_test(size=(200, 40)) as pilot:
        await _opened(app, pilot, StudyScreen)
        assert "same training" not in str(app.screen.query_one(StudyHeader).content)
        assert "same training" not in str(app.screen.query_one("#verdict").content)
