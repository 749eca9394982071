"""All studies in the store: state, progress, best, speedup. Enter opens one.

Fed by the SnapshotReady messages the app routes here; asks for polls and studies with messages.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from autotune.tui import format as fmt
from autotune.daemon.queue import QueuePlace, queue_places
from autotune.tui.data import new_poll_key
from autotune.tui.messages import OpenStudy, PollNow, SnapshotReady

COLUMNS = (
    ("name", "study"), ("state", "state"), ("objective", "objective"), ("trials", "trials"),
    ("best", "best"), ("speedup", "speedup"), ("elapsed", "elapsed"), ("note", ""),
)


class StudiesScreen(Screen):
    study_name: str | None = None  # the poll target: every study's summary

    def __init__(self) -> None:
        super().__init__()
        self.poll_key = new_poll_key()
        self._cells: dict[str, list[Any]] = {}  # what each row shows, to update changed cells only

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="studies-empty")
        yield DataTable(id="studies", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.border_title = "studies"
        table.border_subtitle = "enter: open"
        self.query_one("#studies-empty", Static).display = False

    def on_screen_resume(self) -> None:
        self.post_message(PollNow())

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        snap = message.snapshot
        table = self.query_one(DataTable)
        names = [row["name"] for row in snap.studies]
        present = {key.value for key in table.rows}
        for name in present - set(names):
            table.remove_row(name)
            self._cells.pop(name, None)
        places = queue_places(snap.studies)
        for row in snap.studies:
            name = row["name"]
            cells = self._row_cells(row, (snap.lines or {}).get(name), snap.errors.get(name), places.get(name))
            if name in present:
                for (key, _), cell, old in zip(COLUMNS, cells, self._cells[name]):
                    if cell != old:
                        table.update_cell(name, key, cell)
            else:
                table.add_row(*cells, key=name)
            self._cells[name] = cells
        empty = self.query_one("#studies-empty", Static)
        failed = snap.errors.get("")  # the store itself cannot be read (damaged: its one line)
        empty.display = not names or failed is not None
        if failed is not None:
            empty.update(Text(failed, style="bold red"))
        elif not names:
            empty.update(
                "No studies yet. Start one with\n\n"
                "  autotune study start --name demo --space quick --n-trials 12\n\n"
                "and it appears here."
            )

    @staticmethod
    def _row_cells(row: dict[str, Any], line: dict[str, Any] | None, error: str | None,
                   place: QueuePlace | None) -> list[Any]:
        if line is None:  # no Optuna study yet (queued, or failed before it started), or unreadable
            note = Text(error, style="red") if error else (
                Text(place.describe(), style="dim") if place else Text(row.get("error") or "", style="red"))
            return [row["name"], fmt.study_state(row["status"]), row.get("objective") or "-",
                    f"?/{row.get('n_trials') or '?'}", "-", "-", "-", note]
        objective = line.get("objective")
        best = fmt.objective_values(objective, line.get("best_values"))
        return [
            Text(row["name"], style="bold"),
            fmt.study_state(line["state"]),
            objective or "-",
            f"{line['done']}/{line['total']}",
            best,
            _speedup_cell(line),
            fmt.seconds(line.get("elapsed")),
            Text(row.get("error") or "", style="red"),
        ]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.post_message(OpenStudy(event.row_key.value))


def _speedup_cell(line: dict[str, Any]) -> Text | str:
    """"3.90x confirmed = same training 1.21x x recipe 3.22x", or the search's speedup."""
    if line.get("confirmed_speedup") is None:
        return fmt.ratio(line.get("speedup"))
    factors = fmt.speedup_factors_text(line.get("speedups"), systems=False)
    return Text(f"{fmt.ratio(line['confirmed_speedup'])} confirmed" + (f" = {factors}" if factors else ""),
                style="bold")
