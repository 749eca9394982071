"""One study, live: header, trials table, why the trial under the cursor was pruned or failed,
running trial, best so far or Pareto front (an inference study: also the front of latency vs
metric drop), the verdict (confirmation, noise, why it is faster), importances, hardware and
events. Keys pause/resume, stop, kill a trial and export the best (to $AUTOTUNE_HOME/exports/,
next to the store the UI reads).
A study the daemon has not started yet (queued behind another) shows its place in the queue, and
the panels that stay empty say why; the first poll that finds its trials starts the screen over.

The screen is fed by SnapshotReady and ImportancesReady messages the app routes to it, steers
through autotune.control on the writable Store it asks the app for when a key is pressed (so a
damaged store is never opened for writing by looking at it), and asks the app for polls,
importances and other studies with messages (tui/messages.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from autotune.storage import reading
from autotune import control
from autotune.objectives import objective_unit, objective_value
from autotune.home import study_folder, trial_logs
from autotune.errors import AutotuneError, UsageError
from autotune.statuses import ACTIVE_STUDY_STATES
from autotune.storage.local import Store
from autotune.storage.trial_row import TrialRow
from autotune.tasks import task_of
from autotune.tui.data import StudyUpdate, Watcher, new_poll_key
from autotune.tui.messages import ImportancesReady, ImportancesWanted, PollNow, SnapshotReady, SwitchStudy
from autotune.tui.widgets.event_log import EventLog
from autotune.tui.widgets.hardware import HardwarePane
from autotune.tui.widgets.importances import ImportanceBars
from autotune.tui.widgets.latency_front import LatencyFront
from autotune.tui.widgets.plot import BraillePlot, Series
from autotune.tui.widgets.reason import ReasonPane
from autotune.tui.widgets.running import RunningPane
from autotune.tui.widgets.study_header import StudyHeader
from autotune.tui.widgets.trials_table import TrialsTable
from autotune.tui.widgets.verdict import VerdictPane


def exports_dir(store_path: str | Path) -> Path:
    """Where `e` writes: exports/ beside the store (that is $AUTOTUNE_HOME/exports/)."""
    return Path(store_path).parent / "exports"


def export_stem(name: str) -> str:
    """The study's name when it is a safe file name, else its folder name (home.study_folder)."""
    return name if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,80}", name) else study_folder(name)


class StudyScreen(Screen):
    BINDINGS = [
        Binding("p", "pause", "Pause/resume"),
        Binding("s", "stop", "Stop study"),
        Binding("k", "kill", "Kill trial"),
        Binding("e", "export", "Export best"),
        Binding("tab,]", "switch(1)", "Next study"),
        Binding("shift+tab,[", "switch(-1)", "Prev study", show=False),
        Binding("escape", "back", "Studies"),
    ]

    # vars, not repainting reactives: every poll sets them, and the widgets they feed repaint
    # themselves. No header before the first poll: there is no summary to show.
    summary: var[dict[str, Any]] = var(dict, init=False)
    directions: var[list[str]] = var(list)
    complete_count: var[int] = var(0)
    importances_at: var[int] = var(-1)  # complete count the importances shown were computed for

    def __init__(self, study_name: str, *, store: Store, steering: Callable[[], Store], watcher: Watcher,
                 table_cap: int) -> None:
        """`store` is the app thread's read-only connection; `steering()` its writable one, opened
        on the first key that steers; `watcher` is read only for the study a poll already opened
        (export); the trials table keeps the latest `table_cap` rows."""
        super().__init__()
        self.study_name = study_name
        self.poll_key = new_poll_key()
        self.store = store
        self._steering = steering
        self._watcher = watcher
        self._table_cap = table_cap
        self.exported: Path | None = None  # where `e` last wrote
        self._live: list[dict[str, Any]] = []  # the last poll's live trials
        self._front: list[TrialRow] = []  # an inference study's latency-vs-drop front (the last computed)

    def compose(self) -> ComposeResult:
        yield Header()
        yield StudyHeader(id="study-header")
        with Horizontal(id="study-body"):
            with Vertical(id="study-left"):
                yield TrialsTable(cap=self._table_cap, id="trials")
                yield ReasonPane(id="reason")
                yield RunningPane(id="running")
            with Vertical(id="study-right"):
                yield BraillePlot(id="progress-plot", empty="no complete trial yet: nothing to plot")
                yield LatencyFront(id="latency-front")
                yield VerdictPane(id="verdict")
                yield ImportanceBars(id="importances")
                yield HardwarePane(id="hardware")
                yield EventLog(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.study_name
        self.query_one("#progress-plot").border_title = "best so far"
        self.query_one("#verdict").border_title = "verdict"
        front = self.query_one("#latency-front")
        front.border_title = "Pareto front: latency p50 vs metric drop"
        front.border_subtitle = "lower is better on both"
        front.display = False  # inference studies only
        self.query_one("#verdict").display = False
        self.query_one("#reason").display = False
        self.query_one("#importances").border_title = "importance of each knob"
        self.query_one("#hardware").border_title = "hardware"
        self.query_one("#events").border_title = "events"
        table = self.query_one(TrialsTable)
        table.border_subtitle = "enter: details"
        table.focus()

    def on_screen_resume(self) -> None:
        self.post_message(PollNow())

    # updates -----------------------------------------------------------------------------------

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        snap = message.snapshot
        error = snap.errors.get(self.study_name) or snap.errors.get("")  # "": the store itself
        if error:
            self.sub_title = f"{self.study_name}: {error}"
        update = snap.study
        if update is not None:
            self._apply(update, snap.system)
        if self.complete_count >= 3 and self.complete_count != self.importances_at:
            self.post_message(ImportancesWanted(self.poll_key, self.study_name, self.complete_count))

    def _apply(self, update: StudyUpdate, system: dict[str, Any]) -> None:
        self.sub_title = self.study_name
        if update.reset:  # a new view, or the study has just appeared: nothing shown still holds
            self.query_one(TrialsTable).start_over()
            self.query_one(EventLog).clear()
            self.query_one(BraillePlot).set_series([])
            self.importances_at = -1
            self._front = []
        serving = task_of(update.summary).serves_model
        if self.query_one(LatencyFront).display != serving:
            self.query_one(LatencyFront).display = serving
        running = "running" if serving else "running (bar: budget done; sparkline: samples/s)"
        if self.query_one(RunningPane).border_title != running:
            self.query_one(RunningPane).border_title = running
        self.summary = update.summary
        self.directions = update.summary["directions"]
        self.complete_count = update.complete_count
        self.query_one(StudyHeader).show(update.summary, update.queue, update.waiting, update.reading)
        if update.waiting is not None:
            self._wait(update, update.waiting, system)
            return
        self.query_one(TrialsTable).apply(
            update.new_rows, update.changed_rows, update.total_rows,
            update.summary.get("objective"), update.summary.get("best_number"),
            update.summary.get("metric_info"), task=update.summary.get("task"),
        )
        if update.latency_front is not None:
            self._front = update.latency_front
            self.query_one(TrialsTable).set_front([r.number for r in self._front])
        if serving and update.reading is None:  # every poll: the best (★) may move without a new trial
            self.query_one(LatencyFront).show(self._front, update.summary)
        if update.reading is not None:  # a big study's newest trials; the next poll brings the rest
            return
        self._live = update.live
        self.query_one(RunningPane).show(update.live)
        self.query_one(HardwarePane).show(system, update.hardware, update.live)
        if update.events:
            self.query_one(EventLog).add(update.events)
        self._plot(update)
        self._show_reason()
        self.query_one(VerdictPane).show(update.summary)
        if self.importances_at < 0:
            self.query_one(ImportanceBars).show({}, update.complete_count, pending=update.complete_count >= 3,
                                                finished=update.summary.get("state") not in ACTIVE_STUDY_STATES)
        self._feed_details(update)

    def _show_reason(self) -> None:
        table = self.query_one(TrialsTable)
        self.query_one(ReasonPane).show(table.selected(), table.latest_with_reason)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_reason()

    def _feed_details(self, update: StudyUpdate) -> None:
        """The trial screen on top of this one shows its trial live: its newest row, its live figures."""
        from autotune.tui.screens.trial import TrialScreen

        screen = self.app.screen
        if isinstance(screen, TrialScreen) and screen.study_name == self.study_name:
            number = screen.row.number
            row = next((r for r in (*update.changed_rows, *update.new_rows) if r.number == number), None)
            screen.refresh_trial(row, next((t for t in update.live if t["number"] == number), None))

    def _wait(self, update: StudyUpdate, reason: str, system: dict[str, Any]) -> None:
        """No Optuna study yet: the panels that would show its trials say `reason` they are empty."""
        self.query_one(TrialsTable).wait(reason)
        self.query_one(RunningPane).show([])
        self.query_one(HardwarePane).show(system, {}, [])
        self.query_one(ImportanceBars).show({}, 0, waiting=reason)
        log = self.query_one(EventLog)
        if update.reset:
            log.note(reason)
        if update.events:
            log.add(update.events)

    def _plot(self, update: StudyUpdate) -> None:
        plot = self.query_one(BraillePlot)
        if update.best_so_far is not None:
            objective = update.summary.get("objective")
            name = (update.summary.get("metric_info") or {}).get("name")
            plot.border_title = f"best so far ({objective_unit(objective, name, short=True)}) by trial"
            plot.y_format = lambda v: objective_value(objective, v)
            plot.set_series([Series([(float(n), v) for n, v in update.best_so_far], "green", "step")])
        elif update.pareto is not None:
            front, complete = update.pareto
            plot.border_title = f"Pareto front: {len(front)} trials (y: accuracy, x: samples/s)"
            # x: throughput (objective 1), y: accuracy (objective 0); the front drawn last, bright.
            plot.set_series([
                Series([(r.values[1], r.values[0]) for r in complete if r.values], "grey50", "points"),
                Series([(r.values[1], r.values[0]) for r in front if r.values], "bold green", "points"),
            ])

    def on_importances_ready(self, message: ImportancesReady) -> None:
        self.importances_at = message.complete
        self.query_one(ImportanceBars).show(message.importances, message.complete,
                                            finished=self.summary.get("state") not in ACTIVE_STUDY_STATES)

    # actions -----------------------------------------------------------------------------------

    def action_pause(self) -> None:
        try:
            status = control.toggle_pause(self._steering(), self.study_name)
        except AutotuneError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify("resumed" if status == "running" else
                    "paused: the running trial finishes, no new one starts (p resumes)")
        self.post_message(PollNow())

    def action_stop(self) -> None:
        try:
            control.stop(self._steering(), self.study_name)
        except AutotuneError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify("stopping after the running trial")
        self.post_message(PollNow())

    def action_kill(self) -> None:
        selected = self.query_one(TrialsTable).selected()
        try:
            number = control.kill_trial(self._steering(), self.study_name, selected.number if selected else None)
        except AutotuneError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"killing trial {number}")
        self.post_message(PollNow())

    def action_export(self) -> None:
        from autotune.storage.export import export_config

        folder = exports_dir(self.store.path)
        path = folder / f"{export_stem(self.study_name)}-best.toml"
        try:
            study = self._watcher.opened(self.study_name)  # its rows are cached: fast
            if study is None:
                row = self.store.get_study(self.study_name)
                if row is None:
                    raise UsageError(f"no study '{self.study_name}' in {self.store.path}")
                study = reading.open_view(row["storage"], self.study_name)
            text = export_config(study)
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.write_text(text)
        except (AutotuneError, OSError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"exported the best configuration to {path}\n(autotune trial run --config {path})", timeout=10)
        self.exported = path

    def action_switch(self, step: int) -> None:
        self.post_message(SwitchStudy(self.study_name, step))

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from autotune.tui.screens.trial import TrialScreen

        row = self.query_one(TrialsTable).rows_by_number.get(int(event.row_key.value or -1))
        if row is not None:
            live = next((t for t in self._live if t["number"] == row.number), None)
            self.app.push_screen(TrialScreen(self.study_name, row, self.summary, live=live,
                                             logs_dir=trial_logs(self.study_name, home=Path(self.store.path).parent),
                                             stored_tail=self._stored_tail))

    def _stored_tail(self, row: TrialRow) -> str | None:
        """A finished trial's stored log tail: polls read rows without (Watcher.study)."""
        study = self._watcher.opened(self.study_name)
        try:
            return reading.stored_log_tail(study, row) if study is not None else row.log_tail
        except Exception:  # a storage that cannot be read now: the log file is tried next
            return row.log_tail
