"""One study, live: header, trials table, running trial, best so far or Pareto front,
importances, hardware and events. Keys pause/resume, stop, kill a trial and export the best."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from autotune import results
from autotune.errors import AutotuneError, UsageError
from autotune.tui.data import Snapshot, StudyUpdate, new_poll_key
from autotune.tui.widgets.event_log import EventLog
from autotune.tui.widgets.hardware import HardwarePane
from autotune.tui.widgets.importances import ImportanceBars
from autotune.tui.widgets.plot import BraillePlot, Series
from autotune.tui.widgets.running import RunningPane
from autotune.tui.widgets.study_header import StudyHeader
from autotune.tui.widgets.trials_table import TrialsTable


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

    def __init__(self, study_name: str) -> None:
        super().__init__()
        self.study_name = study_name
        self.poll_key = new_poll_key()
        self.summary: dict[str, Any] = {}
        self.directions: list[str] = []
        self.complete_count = 0
        self.importances_at = -1  # complete count the importances were computed for

    def compose(self) -> ComposeResult:
        yield Header()
        yield StudyHeader(id="study-header")
        with Horizontal(id="study-body"):
            with Vertical(id="study-left"):
                yield TrialsTable(cap=self.app.table_cap, id="trials")
                yield RunningPane(id="running")
            with Vertical(id="study-right"):
                yield BraillePlot(id="progress-plot", empty="waiting for a complete trial")
                yield ImportanceBars(id="importances")
                yield HardwarePane(id="hardware")
                yield EventLog(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.study_name
        self.query_one("#running").border_title = "running"
        self.query_one("#progress-plot").border_title = "best so far"
        self.query_one("#importances").border_title = "importance"
        self.query_one("#hardware").border_title = "hardware"
        self.query_one("#events").border_title = "events"
        table = self.query_one(TrialsTable)
        table.border_subtitle = "enter: details"
        table.focus()

    def on_screen_resume(self) -> None:
        self.app.request_poll()

    # updates -----------------------------------------------------------------------------------

    def apply(self, snap: Snapshot) -> None:
        error = snap.errors.get(self.study_name)
        if error:
            self.sub_title = f"{self.study_name}: {error}"
        update = snap.study
        if update is None:
            return
        self.sub_title = self.study_name
        self.summary = update.summary
        self.directions = update.summary["directions"]
        self.complete_count = update.complete_count
        self.query_one(StudyHeader).show(update.summary)
        self.query_one(TrialsTable).apply(
            update.new_rows, update.changed_rows, update.total_rows,
            update.summary.get("objective"), update.summary.get("best_number"),
        )
        self.query_one(RunningPane).show(update.live)
        self.query_one(HardwarePane).show(snap.system, update.hardware, update.live)
        if update.events:
            self.query_one(EventLog).add(update.events)
        self._plot(update)
        if self.importances_at < 0:
            self.query_one(ImportanceBars).show({}, update.complete_count, pending=update.complete_count >= 3)

    def _plot(self, update: StudyUpdate) -> None:
        plot = self.query_one(BraillePlot)
        if update.best_so_far is not None:
            plot.border_title = "best so far (by trial)"
            plot.set_series([Series([(float(n), v) for n, v in update.best_so_far], "green", "step")])
        elif update.pareto is not None:
            front, complete = update.pareto
            plot.border_title = f"Pareto front: {len(front)} (acc vs samples/s)"
            # x: throughput (objective 1), y: accuracy (objective 0); the front drawn last, bright.
            plot.set_series([
                Series([(r.values[1], r.values[0]) for r in complete if r.values], "grey50", "points"),
                Series([(r.values[1], r.values[0]) for r in front if r.values], "bold green", "points"),
            ])

    def show_importances(self, importances: dict[str, float], complete: int) -> None:
        self.importances_at = complete
        self.query_one(ImportanceBars).show(importances, complete)

    # actions -----------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        return self.app.store

    def action_pause(self) -> None:
        row = self.store.get_study(self.study_name)
        status = row["status"] if row else None
        if status in ("running", "queued"):
            self.store.set_study_status(self.study_name, "paused")
            self.notify("paused: the running trial finishes, no new one starts (p resumes)")
        elif status == "paused":
            self.store.set_study_status(self.study_name, "running", pid=row.get("pid"))
            self.notify("resumed")
        else:
            self.notify(f"study is {status}: nothing to pause", severity="warning")
            return
        self.app.request_poll()

    def action_stop(self) -> None:
        status = self.store.study_status(self.study_name)
        if status not in ("running", "paused", "queued"):
            self.notify(f"study is {status}: nothing to stop", severity="warning")
            return
        self.store.set_study_status(self.study_name, "stopping")
        self.notify("stopping after the running trial")
        self.app.request_poll()

    def action_kill(self) -> None:
        live = [row["number"] for row in self.store.live_trials(self.study_name)]
        if not live:
            self.notify("no trial is running", severity="warning")
            return
        selected = self.query_one(TrialsTable).selected()
        number = selected.number if selected is not None and selected.number in live else live[-1]
        if self.store.request_kill(self.study_name, number):
            self.notify(f"killing trial {number}")
        self.app.request_poll()

    def action_export(self) -> None:
        from autotune.export import export_config

        path = Path.cwd() / f"{self.study_name}-best.toml"
        try:
            study = self.app.watcher.opened(self.study_name)  # its rows are cached: fast
            if study is None:
                row = self.store.get_study(self.study_name)
                if row is None:
                    raise UsageError(f"no study '{self.study_name}' in {self.store.path}")
                study = results.open_view(row["storage"], self.study_name)
            text = export_config(study)
            path.write_text(text)
        except (AutotuneError, OSError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"wrote {path}")

    def action_switch(self, step: int) -> None:
        self.app.switch_study(self.study_name, step)

    def action_back(self) -> None:
        self.app.pop_screen()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from autotune.tui.screens.trial import TrialScreen

        row = self.query_one(TrialsTable).rows_by_number.get(int(event.row_key.value or -1))
        if row is not None:
            self.app.push_screen(TrialScreen(self.study_name, row, self.summary))
