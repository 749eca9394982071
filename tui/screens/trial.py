"""One trial in full: settings, metrics, why it was pruned or failed, its curve and log tail."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from autotune.statuses import TRIAL_METRICS
from autotune.storage.trial_row import TrialRow
from autotune.tui import format as fmt
from autotune.tui.widgets.plot import BraillePlot, Series

METRIC_FORMATS = {
    "peak_memory_bytes": fmt.nbytes, "wall_time": fmt.seconds, "train_time": fmt.seconds,
    "time_to_target": fmt.seconds,
}


class TrialScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, study_name: str, row: TrialRow, summary: dict[str, Any]) -> None:
        super().__init__()
        self.study_name = study_name
        self.row = row
        self.summary = summary

    def compose(self) -> ComposeResult:
        row = self.row
        yield Header()
        title = Text()
        title.append(f"trial {row.number}", style="bold")
        if row.baseline:
            title.append(" (baseline)", style="magenta")
        title.append("  ")
        title.append_text(fmt.state(row.state))
        if row.autotune_status and row.autotune_status not in ("ok", row.state.lower()):
            title.append(f" ({row.autotune_status})")
        if row.values and row.state == "COMPLETE":
            title.append("  value " + fmt.objective_values(self.summary.get("objective"), row.values))
        if row.duration is not None:
            title.append(f"  took {fmt.seconds(row.duration)}")
        yield Static(title, id="trial-title")
        if row.reason:
            yield Static(Text(row.reason, style="yellow"), id="trial-reason")
        with Horizontal(id="trial-body"):
            with Vertical(id="trial-left"):
                yield Static(_table(row.settings, row.params), id="trial-settings")
                yield Static(_table(_measured(row.metrics), {}, METRIC_FORMATS), id="trial-metrics")
                notes = row.metrics.get("notes") or {}
                yield Static(_table({k: v if isinstance(v, (int, float)) else str(v) for k, v in notes.items()}, {},
                                    {k: str for k in notes}), id="trial-notes")
            with Vertical(id="trial-right"):
                yield BraillePlot(id="trial-curve", empty="no validation yet",
                                  x_format=lambda x: f"{x:.2g}")
                with VerticalScroll(id="trial-log"):
                    yield Static(Text(row.log_tail or "(no log)"), id="trial-log-text")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.study_name} / trial {self.row.number}"
        self.query_one("#trial-settings").border_title = "settings (* searched)"
        self.query_one("#trial-metrics").border_title = "metrics"
        self.query_one("#trial-notes").border_title = "knob notes (what each knob did)"
        curve = self.query_one(BraillePlot)
        measured = self.row.metrics.get("curve")
        if measured:  # the metric at each validation, by epoch
            name = (self.summary.get("metric_info") or {}).get("name", "metric")
            curve.border_title = f"{name} at each validation (x: epoch)"
            points = [(float(p[0]), float(p[1])) for p in measured
                      if p[0] is not None and p[1] is not None and math.isfinite(p[1])]
        else:  # a study from before the curve was recorded: what Optuna holds
            curve.border_title = "intermediate values (x: validation)"
            points = [(float(step), v) for step, v in sorted(self.row.intermediate.items()) if math.isfinite(v)]
        curve.set_series([Series(points, "cyan", "line")])
        self.query_one("#trial-log").border_title = "log tail"


def _measured(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a trial measured, flat: validation metrics and rates (tokens_per_s) beside the rest."""
    flat = {k: metrics[k] for k in TRIAL_METRICS if k in metrics and not isinstance(metrics[k], (dict, list))}
    return {**(metrics.get("metrics") or {}), **(metrics.get("rates") or {}), **flat}


def _table(values: dict[str, Any], searched: dict[str, Any], formats: dict[str, Any] | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key, value in values.items():
        shown = (formats or {}).get(key, fmt.number)(value)
        table.add_row(f"{key}{' *' if key in searched else ''}", shown)
    if not values:
        table.add_row("-", "")
    return table
