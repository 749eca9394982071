"""The terminal UI driven by Textual's Pilot on a real store and real Optuna studies."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState
from rich.console import Console

from autotune.storage import reading, results
from autotune.storage.trial_row import row_from_frozen
from autotune.settings import load_config_file
from autotune.storage.export import run_table
from autotune.storage.local import Store
from autotune.tui import format as fmt
from autotune.tui.app import AutotuneApp
from autotune.tui.data import Snapshot
from autotune.tui.demo import DISTRIBUTIONS, build_demo_home, bulk_add_trials, create_demo_study, make_trials
from autotune.tui.messages import ImportancesReady, SnapshotReady
from autotune.tui.screens.studies import StudiesScreen
from autotune.tui.screens.study import StudyScreen
from autotune.tui.screens.trial import TrialScreen
from autotune.tui.widgets.study_header import StudyHeader
from autotune.tui.widgets.trials_table import TrialsTable

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "autotune.cli"]
SIZE = (140, 45)
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once (real Optuna writes take a few seconds), copied for each test."""
    home = tmp_path_factory.mktemp("demo-template")
    build_demo_home(home).close()
    return home


@pytest.fixture
def home(demo_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AUTOTUNE_HOME with 'demo' (running: 14 finished trials + trial 14 live) and 'pareto-demo'."""
    home = tmp_path / "home"
    shutil.copytree(demo_template, home)
    store = Store(home / "autotune.db")
    store.db.execute("update studies set storage = ?", [f"sqlite:///{home / 'studies.db'}"])
    store.close()
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


async def polled(app: AutotuneApp, pilot, polls: int = 1) -> None:  # noqa: ANN001
    """Wait until `polls` more polls were applied to the screen (no sleeping on a guess)."""
    target = app.polls + polls
    for _ in range(500):
        await pilot.pause(0.02)
        if app.polls >= target:
            break
    else:
        raise AssertionError(f"no poll applied (polls={app.polls})")
    await app.workers.wait_for_complete()
    await pilot.pause()


def text(renderable: object) -> str:
    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def cells(table, key: str) -> list[str]:  # noqa: ANN001
    return [str(c) for c in table.get_row(key)]


async def test_studies_table(home: Path) -> None:
    app = AutotuneApp(interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        assert isinstance(app.screen, StudiesScreen)
        table = app.screen.query_one("#studies")
        assert [k.value for k in table.rows] == ["demo", "pareto-demo"]
        demo = cells(table, "demo")
        assert demo[:4] == ["demo", "running", "time-to-accuracy", "14/40"]
        assert demo[5].endswith("x")  # speedup so far
        pareto = cells(table, "pareto-demo")
        assert pareto[1:4] == ["finished", "pareto", "24/24"]


async def test_empty_store_says_how_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTUNE_HOME", str(tmp_path))
    app = AutotuneApp(interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        assert "autotune study start" in str(app.screen.query_one("#studies-empty").content)


async def test_enter_opens_study_with_trial_rows(home: Path) -> None:
    app = AutotuneApp(interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        await pilot.press("enter")
        await polled(app, pilot)
        assert isinstance(app.screen, StudyScreen) and app.screen.study_name == "demo"
        table = app.screen.query_one(TrialsTable)
        assert table.row_count == 15
        assert cells(table, "14")[1] == "running"
        assert cells(table, "2")[1] == "pruned" and "error rate" in cells(table, "2")[-1]
        header = str(app.screen.query_one(StudyHeader).content)
        assert "14/40 trials" in header and "time-to-accuracy" in header and "speedup" in header
        assert "trial 14:" in str(app.screen.query_one("#running-14 Label").content)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, StudiesScreen)


async def test_pause_resume_and_stop(home: Path) -> None:
    store = Store()
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        await pilot.press("p")
        assert store.study_status("demo") == "paused"
        await pilot.press("p")
        assert store.study_status("demo") == "running"
        await pilot.press("s")
        assert store.study_status("demo") == "stopping"
        await polled(app, pilot)
        assert "stopping" in str(app.screen.query_one(StudyHeader).content)


async def test_kill_requests_the_running_trial(home: Path) -> None:
    store = Store()
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        await pilot.press("k")
        assert store.kill_requested("demo", 14)
        live = store.db.execute("select kill_requested from live_trials where study = 'demo'").fetchall()
        assert live == [(1,)]


async def test_export_writes_best_config(home: Path, tmp_path: Path) -> None:
    """`e` writes to $AUTOTUNE_HOME/exports/ (not wherever the UI was started) and says where."""
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        await pilot.press("e")
        path = home / "exports" / "demo-best.toml"
        assert app.screen.exported == path
        assert any(str(path) in str(n.message) for n in app._notifications)
    assert not (tmp_path / "demo-best.toml").exists()
    config = load_config_file(path)
    study = reading.open_study(f"sqlite:///{home / 'studies.db'}", "demo")
    best = results.best_row(study)
    assert config == {"workload": "digits", "settings": best.settings, "run": run_table(study.user_attrs)}
    assert config["run"]["epochs"] == study.user_attrs["autotune"]["budget"]["epochs"]


async def test_enter_on_trial_opens_details(home: Path) -> None:
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        await pilot.press("up", "enter")  # the cursor follows the newest trial; up is trial 13
        await pilot.pause()
        assert isinstance(app.screen, TrialScreen)
        row = app.screen.row
        assert row.number == 13
        settings = text(app.screen.query_one("#trial-settings").content)
        for key, value in row.settings.items():
            assert re.search(rf"{key}( \*)?\s+{re.escape(fmt.setting(value))}", settings), (key, settings)
        assert "log tail" in app.screen.query_one("#trial-log").border_title
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, StudyScreen)


async def test_new_trial_appears_on_next_poll(home: Path) -> None:
    url = f"sqlite:///{home / 'studies.db'}"
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        table = app.screen.query_one(TrialsTable)
        assert table.row_count == 15
        writer = optuna.load_study(study_name="demo", storage=url)
        writer.add_trial(optuna.trial.create_trial(
            params={"batch_size": 128}, distributions={"batch_size": DISTRIBUTIONS["batch_size"]},
            value=0.25, user_attrs={"settings": {"batch_size": 128}, "autotune_status": "ok",
                                    "throughput": 9999.0},
        ))
        await polled(app, pilot, polls=2)
        assert table.row_count == 16
        assert cells(table, "15")[:2] == ["15★", "complete"]  # 0.25 s beats the best so far
        assert "#15" in str(app.screen.query_one(StudyHeader).content)
        writer.tell(14, 0.1)  # the running trial finishes, best of all
        await polled(app, pilot, polls=2)
        assert cells(table, "14")[:2] == ["14★", "complete"]
        assert cells(table, "15")[:2] == ["15", "complete"]
        assert "14/40" not in str(app.screen.query_one(StudyHeader).content)


async def test_tab_switches_studies(home: Path) -> None:
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        await pilot.press("tab")
        await polled(app, pilot)
        assert app.screen.study_name == "pareto-demo"
        assert app.screen.query_one(TrialsTable).row_count == 24
        assert "Pareto front" in app.screen.query_one("#progress-plot").border_title
        await pilot.press("[")
        await polled(app, pilot)
        assert app.screen.study_name == "demo"


async def test_table_keeps_only_the_latest_rows(home: Path) -> None:
    app = AutotuneApp(study="pareto-demo", interval=0.1, table_cap=5)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        table = app.screen.query_one(TrialsTable)
        assert [k.value for k in table.rows] == ["19", "20", "21", "22", "23"]
        assert table.border_title == "trials: latest 5 of 24"


async def test_results_reach_only_the_poll_target(home: Path) -> None:
    """The app routes worker results by the key of the screen they were fetched for: the study
    screen on top gets its own, the studies list under it (no longer polled) gets nothing."""
    app = AutotuneApp(interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        studies = app.screen
        await pilot.press("enter")
        await polled(app, pilot)
        study = app.screen
        assert isinstance(study, StudyScreen)
        for _ in range(200):  # the real importances first, so they cannot land after the ones below
            if study.importances_at >= 0:
                break
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        stale = Snapshot(studies=[])
        app.post_message(SnapshotReady(stale, studies.poll_key))
        app.post_message(ImportancesReady(studies.poll_key, "demo", 98, {"stale_knob": 1.0}, 0.0))
        # took=1000 holds the throttle, so no real computation replaces these before the asserts
        app.post_message(ImportancesReady(study.poll_key, "demo", 99, {"routed_knob": 1.0}, 1000.0))
        # Polls never overlap, so the second of two polls was posted after the messages above,
        # and the app's queue is FIFO: by then they have all been handled.
        await polled(app, pilot, polls=2)
        assert app.last_snapshot is not stale
        assert [k.value for k in studies.query_one("#studies").rows] == ["demo", "pareto-demo"]
        assert study.importances_at == 99
        bars = str(study.query_one("#importances").content)
        assert "routed_knob" in bars and "stale_knob" not in bars


def test_cli_rejects_an_unknown_study(home: Path) -> None:
    from autotune.cli import cli

    result = CliRunner().invoke(cli, ["tui", "nope"])
    assert result.exit_code == 2
    assert "no study 'nope'" in result.output and "demo, pareto-demo" in result.output


def test_bulk_trials_read_back_by_optuna(tmp_path: Path) -> None:
    """The benchmark's fast writer produces trials Optuna itself reads identically."""
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    create_demo_study(url, "bulk")
    trials = make_trials(30, running=1, start=datetime(2026, 1, 1) + timedelta(seconds=0.5))
    bulk_add_trials(url, "bulk", trials)
    read = optuna.load_study(study_name="bulk", storage=url).get_trials()
    assert [row_from_frozen(t) for t in read] == [row_from_frozen(t) for t in trials]
    assert reading.trial_rows(reading.open_study(url, "bulk")) == [row_from_frozen(t) for t in read]


@pytest.mark.slow
async def test_end_to_end_with_a_real_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real `autotune study start` in a subprocess; the UI's finished count rises."""
    if importlib.util.find_spec("autotune.study") is None:
        pytest.skip("needs the study runner (autotune.study / `autotune study start`)")
    home = tmp_path / "home"
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    log = open(tmp_path / "study.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autotune.cli", "study", "start", "--name", "e2e", "--space", "quick",
         "--n-trials", "4", "--no-tui", "--budget-epochs", "1"],
        env={**os.environ, "AUTOTUNE_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT,
    )
    seen: list[int] = []
    try:
        app = AutotuneApp(study="e2e", interval=0.3)
        async with app.run_test(size=SIZE) as pilot:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                await pilot.pause(0.3)
                match = re.search(r"(\d+)/4 trials", str(app.screen.query_one(StudyHeader).content))
                if match:
                    seen.append(int(match.group(1)))
                    if seen[-1] > seen[0]:
                        break
                if proc.poll() is not None and proc.returncode != 0:
                    break
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        log.close()
    output = (tmp_path / "study.log").read_text()[-2000:]
    assert seen, f"the study never showed up; runner output:\n{output}"
    assert seen[-1] > seen[0], f"finished count did not rise: {seen[:3]}...{seen[-3:]}\n{output}"


def _queue_behind_demo(home: Path, *names: str) -> str:
    """Queue `names` for the daemon in `home`, behind the running 'demo', without an Optuna study
    (the daemon creates it when it starts one); returns the storage URL they will use."""
    url = f"sqlite:///{home / 'studies.db'}"
    store = Store()
    for name in names:
        store.put_study(name, storage=url, workload="digits", space="quick", objective="time-to-accuracy",
                        n_trials=12, spec={"name": name, "budget": {"epochs": 5}}, status="queued")
        store.add_event(name, "study_queued", f"study {name} queued for the daemon")
    store.close()
    return url


def event_lines(log) -> list[str]:  # noqa: ANN001
    return [strip.text for strip in log.lines]


async def test_a_queued_study_shows_its_place_then_goes_live(home: Path) -> None:
    """A study queued behind a running one has no Optuna study yet: its screen says where it
    waits and why the panels are empty, and turns into the live view once the daemon starts it."""
    url = _queue_behind_demo(home, "later")
    app = AutotuneApp(study="later", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        screen = app.screen
        assert isinstance(screen, StudyScreen) and screen.study_name == "later"
        header = str(screen.query_one(StudyHeader).content)
        assert "queued: 1st in the daemon's queue, behind 'demo' (running)" in header
        assert "0/12 trials" in header
        table = screen.query_one(TrialsTable)
        assert table.row_count == 0
        assert "waiting for the daemon to start this study" in table.border_title
        log = screen.query_one("#events")
        assert event_lines(log)[0] == "waiting for the daemon to start this study"
        assert any("study later queued for the daemon" in line for line in event_lines(log))
        assert app.last_snapshot.errors == {}
        assert "no study" not in screen.sub_title and "no study" not in header

        # the daemon starts it: the runner creates the Optuna study and its first trials
        store = Store()
        store.set_study_status("later", "running")
        store.add_event("later", "study_started", "study later started: digits, time-to-accuracy, 12 trials")
        store.close()
        create_demo_study(url, "later", n_trials=12).add_trials(make_trials(3, running=1, seed=3))
        await polled(app, pilot, polls=2)  # the poll in flight may have read before the writes
        assert app.screen is screen
        assert table.row_count == 4 and cells(table, "3")[1] == "running"
        assert table.border_title == "trials (4)"
        header = str(screen.query_one(StudyHeader).content)
        assert "queued" not in header and "3/12 trials" in header
        lines = event_lines(log)
        assert "waiting for the daemon to start this study" not in lines  # the screen started over
        assert any("study later started" in line for line in lines)
        assert len([line for line in lines if "queued for the daemon" in line]) == 1  # not twice


def test_watcher_tells_queued_from_unknown(home: Path) -> None:
    """Polls of queued studies are well formed (results.summary's keys, their place, no rows),
    the studies list has no error for them, and only a study nobody queued is an error."""
    from autotune.tui.data import Watcher

    _queue_behind_demo(home, "second", "third")
    watcher = Watcher()
    try:
        snap = watcher.poll("third", target="t")
        assert snap.errors == {}
        update = snap.study
        assert update.queue is not None and update.queue.describe() == (
            "2nd in the daemon's queue, behind 'demo' (running), 'second' (queued)")
        assert update.waiting == "waiting for the daemon to start this study"
        assert update.new_rows == [] and update.total_rows == 0 and update.reset
        demo = reading.open_view(f"sqlite:///{home / 'studies.db'}", "demo")
        assert set(update.summary) == set(results.summary(demo, Store().get_study("demo")))
        assert update.summary["state"] == "queued" and update.summary["total"] == 12
        assert update.summary["budget"] == "5 epochs"
        again = watcher.poll("third", target="t").study
        assert not again.reset and again.events == []  # incremental while it waits, too

        listed = watcher.poll(None)
        assert listed.errors == {} and set(listed.lines) == {"demo", "pareto-demo"}

        unknown = watcher.poll("nope", target="u")
        assert unknown.study is None
        assert unknown.errors["nope"].startswith("no study 'nope': ")
        assert "no such study queued, running or finished" in unknown.errors["nope"]
    finally:
        watcher.close()


def test_study_start_says_a_study_is_still_queued(home: Path) -> None:
    """The line `study start` prints when its UI closes before the daemon started the study."""
    from autotune.commands.study_start import still_queued_note

    _queue_behind_demo(home, "later")
    store = Store()
    try:
        assert still_queued_note(store, "later") == (
            "autotune: study 'later' is still queued: 1st in the daemon's queue, behind 'demo' (running); "
            "the daemon will run it (cancel it with `autotune study stop later`, "
            "watch it again with `autotune tui later`)"
        )
        assert still_queued_note(store, "demo") is None  # running: nothing to say
        store.set_study_status("later", "running")
        assert still_queued_note(store, "later") is None
    finally:
        store.close()


async def test_running_trial_details_are_live(home: Path) -> None:
    """The detail view of the running trial shows its live figures and its log file's tail, and
    follows them poll by poll."""
    from autotune.home import study_folder

    logs = home / "logs" / "trials" / study_folder("demo")
    logs.mkdir(parents=True)
    (logs / "14.log").write_text("epoch 1/5 loss 0.912\n")
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        await pilot.press("enter")  # the cursor follows the newest trial: the running 14
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrialScreen) and screen.row.number == 14
        live = screen.query_one("#trial-metrics")
        assert live.border_title == "live (this trial is running)"
        shown = text(live.content)
        assert re.search(r"throughput\s+3,120 samples/s", shown) and re.search(r"fraction\s+60%", shown), shown
        assert re.search(r"peak memory\s+202 MiB", shown), shown
        assert "epoch 1/5 loss 0.912" in text(screen.query_one("#trial-log-text").content)

        Store().trial_progress("demo", 14, step=112, fraction=0.8, samples_per_s=2950.0)
        with open(logs / "14.log", "a") as log:
            log.write("epoch 2/5 loss 0.402\n")
        await polled(app, pilot, polls=2)
        shown = text(screen.query_one("#trial-metrics").content)
        assert re.search(r"step\s+112", shown) and re.search(r"throughput\s+2,950 samples/s", shown), shown
        assert "epoch 2/5 loss 0.402" in text(screen.query_one("#trial-log-text").content)


async def test_finished_study_shows_its_verdict_in_full(home: Path) -> None:
    """The header names the metric and its direction, the noise and the confirmation; the
    verdict panel gives the interval, the noise warning and the steps of why it is faster; a
    finished study never promises importances "after N more" trials."""
    url = f"sqlite:///{home / 'studies.db'}"
    study = optuna.load_study(study_name="demo", storage=url)
    study.set_user_attr("confirmation", {
        "speedup_median": 2.1, "speedup_min": 1.8, "speedup_max": 2.4, "interval": [1.8, 2.4], "coverage": 0.75,
        "confirmed": True, "valid_pairs": 3, "repeats": 3, "runs": [{"seed": 1000}]})
    study.set_user_attr("noise", {"margin": 0.12, "noisy": True, "source": "re-runs", "load_avg": 6.2})
    study.set_user_attr("why_faster", {"steps": [
        {"from": {"batch_size": 64}, "to": {"batch_size": 512}, "ratio": 1.6},
        {"from": {"beta2": 0.9999}, "to": {"beta2": 0.999}, "ratio": 1.3}]})
    store = Store()
    store.set_study_status("demo", "finished")
    store.close()
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        header = str(app.screen.query_one(StudyHeader).content)
        assert "metric accuracy ↑ (higher is better), target accuracy>=0.94" in header
        assert "confirmed speedup 2.10x" in header and "noise ±12%: hides differences below 1.12x" in header
        verdict = app.screen.query_one("#verdict")
        assert verdict.display
        shown = " ".join(text(verdict.content).split())
        assert "confirmation confirmed 2.10x: 75% interval 1.80-2.40x over 3 of 3 paired re-runs" in shown
        assert "1. batch_size 64 -> 512: 1.60x" in shown and "2. beta2 0.9999 -> 0.999: 1.30x" in shown
        assert "--confirm 5" in shown  # what to do about the noise
        assert "{" not in shown and "[" not in shown

    # a finished study with fewer than 3 complete trials: why there are no importances, not a promise
    pareto = optuna.load_study(study_name="pareto-demo", storage=url)
    assert pareto.trials  # the demo's finished study, which has plenty: use a fresh one with one trial
    one = create_demo_study(url, "one", n_trials=1)
    one.add_trials(make_trials(1, seed=5))
    store = Store()
    store.put_study("one", storage=url, workload="digits", space="quick", objective="time-to-accuracy",
                    n_trials=1, spec={"name": "one"}, status="finished")
    store.close()
    app = AutotuneApp(study="one", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        bars = str(app.screen.query_one("#importances").content)
        assert "more complete trial" not in bars and "finished with 1 complete trial(s), it takes 3" in bars


async def test_a_whole_reason_is_shown_for_the_trial_under_the_cursor(home: Path) -> None:
    """The reason pane wraps the highlighted trial's reason whole; off a trial without one, it
    shows the latest trial that has one; the events pane wraps instead of cutting."""
    app = AutotuneApp(study="demo", interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await polled(app, pilot)
        pane = app.screen.query_one("#reason")
        table = app.screen.query_one(TrialsTable)
        assert pane.display and pane.border_title == "why trial 11 was pruned (the latest with a reason)"
        table.move_cursor(row=table.get_row_index("6"))
        await pilot.pause()
        assert pane.border_title == "why trial 6 failed"
        assert text(pane.content).split() == table.rows_by_number[6].reason.split()
        log = app.screen.query_one("#events")
        width = log.scrollable_content_region.width
        assert all(len(line.rstrip()) <= width for line in event_lines(log))
        lines = event_lines(log)
        assert any("loss became NaN at step 212 (learning_rate 0.29 too high?)" in " ".join(" ".join(lines[i:i + 2]).split())
                   for i in range(len(lines)))


def test_a_big_study_is_read_newest_page_first(home: Path) -> None:
    """The first poll of a study with more trials than a page brings only the newest page and
    says how many it is reading; the next starts the view over with every row; then it is
    incremental again. Rows come without their log tails, which stored_log_tail reads."""
    from autotune.tui.data import Watcher

    watcher = Watcher(first_page=5)
    try:
        first = watcher.poll("pareto-demo", target="t").study
        assert first.reading == 24 and first.total_rows == 24 and first.reset
        assert [r.number for r in first.new_rows] == [19, 20, 21, 22, 23]
        assert first.summary["done"] == 0 and first.best_so_far is None and first.pareto is None
        full = watcher.poll("pareto-demo", target="t").study
        assert full.reading is None and full.reset and full.pareto is not None
        assert [r.number for r in full.new_rows] == list(range(24)) and full.summary["done"] == 24
        assert not watcher.poll("pareto-demo", target="t").study.reset
        small = Watcher(first_page=50).poll("demo", target="d").study  # fits a page: one read
        assert small.reading is None and len(small.new_rows) == 15

        study = watcher.opened("pareto-demo")
        optuna_study = reading.open_study(f"sqlite:///{home / 'studies.db'}", "pareto-demo")
        for row in full.new_rows:
            stored = optuna_study.trials[row.number].user_attrs.get("log_tail")
            assert row.log_tail is None and reading.stored_log_tail(study, row) == stored
        assert any(optuna_study.trials[n].user_attrs.get("log_tail") for n in range(24))
    finally:
        watcher.close()


async def test_a_big_study_opens_on_its_newest_trials_then_fills_in(home: Path) -> None:
    app = AutotuneApp(study="pareto-demo", interval=30, table_cap=5)  # no timed poll: only the follow-up
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(TrialsTable)
        seen = []
        for _ in range(500):  # the headers the screen shows until both polls are in
            await pilot.pause(0.01)
            seen.append((str(app.screen.query_one(StudyHeader).content), [k.value for k in table.rows]))
            if app.polls >= 2 and "reading" not in seen[-1][0]:
                break
        reading_its = [rows for header, rows in seen if "reading its 24 trials" in header]
        assert all(rows in ([], ["19", "20", "21", "22", "23"]) for rows in reading_its)
        header = str(app.screen.query_one(StudyHeader).content)
        assert "24/24 trials" in header and "reading" not in header
        assert [k.value for k in table.rows] == ["19", "20", "21", "22", "23"]
        assert table.border_title == "trials: latest 5 of 24"
        assert "Pareto front" in app.screen.query_one("#progress-plot").border_title
        await pilot.press("enter")  # the newest trial, finished: its stored log tail
        await pilot.pause()
        assert isinstance(app.screen, TrialScreen)
        stored = reading.open_study(f"sqlite:///{home / 'studies.db'}", "pareto-demo").trials[23].user_attrs
        assert str(app.screen.query_one("#trial-log-text").content) == stored["log_tail"]


# --- real studies: the metric's direction, and steering a study that runs --------------------


async def test_the_tui_shows_the_metric_and_its_direction(regression_study, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    home, proc = regression_study
    assert proc.returncode == 0, proc.stderr[-3000:]
    monkeypatch.setenv("AUTOTUNE_HOME", str(home))
    app = AutotuneApp(interval=0.1, study="reg")
    async with app.run_test(size=(160, 45)) as pilot:
        for _ in range(200):
            await pilot.pause(0.05)
            if app.screen.query(TrialsTable) and app.screen.query_one(TrialsTable).row_count:
                break
        header = str(app.screen.query_one(StudyHeader).content)
        assert "val_mse<=" in header  # the metric, and which way is better, with its target
        table = app.screen.query_one(TrialsTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert "val_mse ↓" in labels
        column = labels.index("val_mse ↓")
        values = [str(table.get_row_at(i)[column]) for i in range(table.row_count)]
        assert any(v not in ("-", "") and math.isfinite(float(v)) for v in values)
        # a trial's screen: every validation metric, and what the knobs noted
        table.focus()
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert "val_mae" in text(app.screen.query_one("#trial-metrics").content)
        assert "threads" in text(app.screen.query_one("#trial-notes").content)


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """An empty AUTOTUNE_HOME, and its parent as the working folder: for studies started here."""
    path = tmp_path / "home"
    monkeypatch.setenv("AUTOTUNE_HOME", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def trials(home: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{home / 'studies.db'}"
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


async def wait_until(pilot, condition, what: str, timeout: float = 120.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def test_keys_pause_resume_and_kill_a_running_study(empty_home, tmp_path):
    log = open(tmp_path / "study.log", "w")
    proc = subprocess.Popen(
        [*CLI, "study", "start", "--name", "steer", "--space", "quick", "--n-trials", "5",
         "--budget-epochs", "5", "--confirm", "0", "--no-tui", "--seed", "3"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        app = AutotuneApp(study="steer", interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            store = Store()

            def live_number() -> int | None:
                rows = [r for r in store.live_trials("steer") if r["pid"]]
                return rows[0]["number"] if rows else None

            # Kill: the key stops the running trial; it is recorded as stopped by the user.
            await wait_until(pilot, lambda: (live_number() or 0) >= 1, "trial 1 to run")
            victim = live_number()
            await pilot.press("k")
            await wait_until(pilot, lambda: any(t.number == victim and t.state == TrialState.FAIL
                                                for t in trials(empty_home, "steer")), "the killed trial")
            killed = trials(empty_home, "steer")[victim]
            assert killed.user_attrs["autotune_status"] == "killed"
            assert killed.user_attrs["reason"] == "stopped by the user"

            # Pause: the running trial may finish, but no new trial starts.
            await wait_until(pilot, lambda: live_number() is not None, "the next trial to run")
            await pilot.press("p")
            assert store.study_status("steer") == "paused"
            await wait_until(pilot, lambda: live_number() is None, "the running trial to finish")
            count = len(trials(empty_home, "steer"))
            await pilot.pause(4.0)
            assert len(trials(empty_home, "steer")) == count and live_number() is None

            # Resume: trials start again.
            await pilot.press("p")
            assert store.study_status("steer") == "running"
            await wait_until(pilot, lambda: len(trials(empty_home, "steer")) > count, "a new trial after resume")

            # Stop: the study ends after its running trial; the process exits cleanly.
            await pilot.press("s")
            assert store.study_status("steer") == "stopping"
        assert proc.wait(120) == 0
        assert Store().study_status("steer") == "stopped"
        assert not [t for t in trials(empty_home, "steer") if t.state == TrialState.RUNNING]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


# Every searched trial trains at a learning rate that cannot reach the baseline's target, so each
# is pruned with a reason, and the reasons are long: they must be readable whole.
HOPELESS_SPACE = """
only = ["learning_rate"]
[knobs.learning_rate]
choices = [1e-7]
"""
RAW_PYTHON = re.compile(r"[{\[]['\"]|'\w+': ")  # {'complete': 1, ...}, ['a', ...]


class Terminal:
    """`autotune tui NAME` in a tmux session of its own, read back with capture-pane."""

    def __init__(self, name: str, home: Path, env: dict[str, str], size: tuple[int, int] = (200, 50)) -> None:
        self.session = f"autotune-test-{os.getpid()}-{name}"
        command = " ".join([*CLI, "tui", name])
        # The pane starts at tmux's default size and is resized after: a program started with
        # the session may read the old size. So: the session first, the program once it is sized.
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(size[0]), "-y", str(size[1]),
                        "sleep 600"], check=True)
        # a UI that exits (a usage error, a crash) leaves what it printed on screen for the failure
        subprocess.run(["tmux", "set-option", "-t", self.session, "remain-on-exit", "on"], check=True)
        wanted = f"{size[0]}x{size[1]}"
        for _ in range(100):
            shown = subprocess.run(["tmux", "display-message", "-p", "-t", self.session,
                                    "#{pane_width}x#{pane_height}"], capture_output=True, text=True).stdout.strip()
            if shown == wanted:
                break
            subprocess.run(["tmux", "resize-window", "-t", self.session, "-x", str(size[0]), "-y", str(size[1])],
                           capture_output=True)
            time.sleep(0.05)
        subprocess.run(["tmux", "respawn-pane", "-k", "-t", self.session,
                        # COLUMNS and LINES (pytest's, in tmux's server) would override the pane's size
                        f"env -u COLUMNS -u LINES AUTOTUNE_HOME={home} PYTHONPATH={env['PYTHONPATH']} "
                        f"TERM=xterm-256color {command}"],
                       check=True)
        self.screens: list[str] = []

    def capture(self) -> str:
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session],
                                capture_output=True, text=True).stdout
        self.screens.append(screen)
        return screen

    def wait_for(self, condition, what: str, timeout: float = 120.0) -> str:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if condition(screen):
                return screen
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def panel_text(screen: str, title: str) -> str | None:
    """The text inside the bordered panel whose title starts with `title`, its wrapped lines
    joined by spaces; None when no such panel is on the screen."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        at = line.find("╭─ " + title)
        if at < 0:
            continue
        end = line.index("╮", at)
        inside = []
        for below in lines[i + 1:]:
            if below[at:at + 1] != "│":
                break
            inside.append(below[at + 1:end].strip())
        return " ".join(part for part in inside if part)
    return None


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_tui_in_a_terminal_shows_reasons_queued_studies_and_the_metric(empty_home, tmp_path):
    """Two real studies handed to a real daemon (one worker), watched in real terminals: the
    queued one says so and what it waits for from its first screen (never "no study"); the
    running one shows a pruning reason whole, its metric's name, and its count moving forward; no line
    of any screen holds a raw Python dict or list."""
    space = tmp_path / "hopeless.toml"
    space.write_text(HOPELESS_SPACE)
    env = {**os.environ, "AUTOTUNE_HOME": str(empty_home), "TERM": "xterm-256color",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    study = ["--workload", "tests.workloads_for_tests:regression", "--space", str(space), "--budget-steps", "40",
             "--confirm", "0", "--seed", "1"]
    subprocess.run([*CLI, "daemon", "start", "--workers", "1"], env=env, check=True, capture_output=True, timeout=120)
    terminals: list[Terminal] = []
    try:
        for name, n in (("first", 3), ("second", 2)):
            submit = subprocess.run([*CLI, "study", "start", "--detach", "--name", name, "--n-trials", str(n), *study],
                                    env=env, capture_output=True, text=True, timeout=60)
            assert submit.returncode == 0, submit.stderr
        queued = Terminal("second", empty_home, env)
        terminals.append(queued)
        # from the first screen that shows the study at all, it is queued behind 'first'
        screen = queued.wait_for(lambda s: "second ·" in s, "the queued study's header", timeout=60)
        # 2nd while the daemon has not taken 'first' yet either
        assert re.search(r"queued: (1st|2nd) in the daemon's queue, behind 'first' \((running|queued)\)", screen), screen
        queued.wait_for(lambda s: "trials: none yet, waiting for the daemon to start this study" in s,
                        "the empty trials panel to say why", timeout=30)

        running = Terminal("first", empty_home, env)
        terminals.append(running)

        def pruned_reason_shown(screen: str) -> bool:
            shown = panel_text(screen, "why trial ")
            return bool(shown) and "/3 trials" in screen
        screen = running.wait_for(pruned_reason_shown, "a pruning reason", timeout=180)
        title = re.search(r"why trial (\d+) was pruned", screen)
        assert title, screen
        reason = trials(empty_home, "first")[int(title.group(1))].user_attrs["reason"]
        assert len(reason) > 60  # a reason that a fixed-width cell used to cut
        assert " ".join(reason.split()) in panel_text(screen, "why trial "), screen
        assert "metric val_mse ↓ (lower is better)" in screen  # the primary metric and its direction
        assert "val_mse ↓" in screen  # the trials table's metric column
        running.wait_for(lambda s: "3/3 trials" in s, "the first study to finish", timeout=180)
        # the count only moves forward (how far the study was when the UI opened is a race: a
        # 40-step trial of this workload takes about a second)
        counts = [int(m.group(1)) for s in running.screens if (m := re.search(r"(\d+)/3 trials", s))]
        assert counts == sorted(counts) and counts[-1] == 3, counts

        # the queued study goes live once the daemon starts it: the same screen, no reopening
        live = queued.wait_for(lambda s: re.search(r"(running|finished) · \d/2 trials", s),
                               "the second study to start", timeout=120)
        assert "queued:" not in live and re.search(r"trials \(\d\)", live), live  # its trials table
        for screen in queued.screens + running.screens:
            assert "no study" not in screen, screen
            for line in screen.splitlines():
                assert not RAW_PYTHON.search(line), line
    finally:
        for terminal in terminals:
            terminal.close()
        subprocess.run([*CLI, "daemon", "stop", "--force"], env=env, capture_output=True, timeout=180)
