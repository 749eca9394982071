"""One trial in full: why it was pruned or failed (the whole reason, wrapped), its settings, what
it measured in units (an inference trial: serving it, and the accuracy guard's verdict), the
knobs' notes, its validation curve (none for an inference trial) and its log tail. A running
trial is shown live: the study screen under this one hands it each poll's row and live figures
(`refresh_trial`), and its log tail is read from the trial's log file."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from autotune.formatting import validation
from autotune.objectives import objective_unit, objective_value
from autotune.home import log_tail
from autotune.statuses import TRIAL_METRICS
from autotune.storage.trial_row import TrialRow
from autotune.tasks import task_of
from autotune.tui import format as fmt
from autotune.tui.widgets.plot import BraillePlot, Series
from autotune.tui.widgets.reason import reason_of

LIVE_FIELDS = ("fraction", "step", "total_steps", "samples_per_s", "train_time", "peak_memory_bytes")


class TrialScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, study_name: str, row: TrialRow, summary: dict[str, Any],
                 live: dict[str, Any] | None = None, logs_dir: Path | None = None,
                 stored_tail: Callable[[TrialRow], str | None] | None = None) -> None:
        """`live`: the trial's live_trials row while it runs; `logs_dir`: where the study's trials
        write their logs (its running trial's tail is read there); `stored_tail`: a finished
        trial's stored log tail, for rows read without it (reading.stored_log_tail)."""
        super().__init__()
        self.study_name = study_name
        self.row = row
        self.summary = summary
        self.live = live
        self.logs_dir = logs_dir
        self._stored_tail = stored_tail or (lambda r: r.log_tail)
        self._live_key: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="trial-title")
        yield Static(id="trial-reason")
        with Horizontal(id="trial-body"):
            with VerticalScroll(id="trial-left"):
                yield Static(id="trial-settings")
                yield Static(id="trial-metrics")
                yield Static(id="trial-notes")
            with Vertical(id="trial-right"):
                yield BraillePlot(id="trial-curve", empty="no validation yet: nothing to plot",
                                  x_format=lambda x: f"{x:.2g}")
                with VerticalScroll(id="trial-log"):
                    yield Static(id="trial-log-text")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.study_name} / trial {self.row.number}"
        self.query_one("#trial-settings").border_title = "settings (* searched)"
        self.query_one("#trial-notes").border_title = "knob notes (what each knob did)"
        self.query_one("#trial-log").border_title = "log tail"
        self._show()

    def refresh_trial(self, row: TrialRow | None, live: dict[str, Any] | None) -> None:
        """A poll's news of this trial: its row when it changed, its live figures (None: not running)."""
        key = (live or {}).get("updated_at")
        if row is None and key == self._live_key and (live is None) == (self.live is None):
            return
        if row is not None:
            self.row = row
        self.live = live
        self._show()

    def _show(self) -> None:
        row, live = self.row, self.live
        self._live_key = (live or {}).get("updated_at")
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
        self.query_one("#trial-title", Static).update(title)
        reason = reason_of(row)
        box = self.query_one("#trial-reason", Static)
        box.display = bool(reason)
        if reason:
            box.update(Text(reason, style="yellow" if row.state == "PRUNED" else "red"))
        self.query_one("#trial-settings", Static).update(_settings_table(row.settings, row.params))
        metrics = self.query_one("#trial-metrics", Static)
        if live is not None and row.state == "RUNNING":
            metrics.border_title = "live (this trial is running)"
            metrics.update(_metrics_table({k: live.get(k) for k in LIVE_FIELDS if live.get(k) is not None}))
        elif task_of(self.summary).serves_model:
            metrics.border_title = "measured serving it"
            metrics.update(_serving_table(row, self.summary))
        else:
            metrics.border_title = "measured"
            metrics.update(_metrics_table(_measured(row.metrics)))
        notes = row.metrics.get("notes") or {}
        self.query_one("#trial-notes", Static).update(
            _notes_table(notes) if notes else Text("no knob left a note" if row.finished else
                                                   "the knobs' notes come when the trial ends", style="dim"))
        self._curve()
        self.query_one("#trial-log-text", Static).update(Text(self._log_tail() or "(no output yet)"))

    def _log_tail(self) -> str:
        """The stored tail of a finished trial; the log file's tail while it runs."""
        stored = self._stored_tail(self.row) if self.row.finished else self.row.log_tail
        if stored:
            return stored
        if self.logs_dir is not None:
            tail = log_tail(self.logs_dir / f"{self.row.number}.log")
            if tail:
                return tail
        return ""

    def _curve(self) -> None:
        curve = self.query_one(BraillePlot)
        # an inference trial serves a trained model: it validates once, there is no curve to plot
        curve.display = not task_of(self.summary).serves_model
        measured = self.row.metrics.get("curve")
        if measured:  # the metric at each validation, by epoch
            name = (self.summary.get("metric_info") or {}).get("name", "metric")
            curve.border_title = f"{name} at each validation (y: {name}, x: epoch)"
            curve.y_format = validation
            points = [(float(p[0]), float(p[1])) for p in measured
                      if p[0] is not None and p[1] is not None and math.isfinite(p[1])]
        else:  # a running trial (or a study from before the curve was recorded): what Optuna holds
            unit = objective_unit(self.summary.get("objective"), (self.summary.get("metric_info") or {}).get("name"))
            curve.border_title = f"intermediate values (y: {unit}, x: validation)"
            objective = self.summary.get("objective")
            curve.y_format = lambda v: objective_value(objective, v)
            points = [(float(step), v) for step, v in sorted(self.row.intermediate.items()) if math.isfinite(v)]
        curve.set_series([Series(points, "cyan", "line")])


def _measured(metrics: dict[str, Any]) -> dict[str, Any]:
    """What a trial measured, flat: validation metrics and rates (tokens_per_s) beside the rest;
    the one-time costs and the machine's load as one line each."""
    flat = {k: metrics[k] for k in TRIAL_METRICS
            if k in metrics and not isinstance(metrics[k], (list,)) and k not in ("metrics", "notes", "rates")}
    return {**(metrics.get("metrics") or {}), **(metrics.get("rates") or {}), **flat}


# What serving a model measured, in the order a reader compares trials by (the objective first).
SERVING = ("latency_p50", "latency_p95", "throughput", "peak_memory_bytes", "model_bytes", "compile_time",
           "metric_value", "metric_drop")


def _serving_table(row: TrialRow, summary: dict[str, Any]) -> Table:
    """An inference trial's measurements: latency (batch 1), throughput at its serve_batch_size,
    memory, size, the metric and its drop, the accuracy guard's verdict, then the rest."""
    m = row.metrics
    metric = (summary.get("metric_info") or {}).get("name", "metric")
    table = _grid()
    for key in SERVING:
        if key == "compile_time" and m.get(key) is None:
            continue  # nothing compiled
        label = {"latency_p50": "latency p50 (batch 1)", "latency_p95": "latency p95 (batch 1)",
                 "throughput": f"throughput (batch {row.settings.get('serve_batch_size', '?')})",
                 "metric_value": metric}.get(key, fmt.metric_label(key))
        table.add_row(label, fmt.metric(metric if key == "metric_value" else key, m.get(key)))
    if row.state == "COMPLETE":
        limit = fmt.percent((summary.get("guard") or {}).get("max_drop"))
        table.add_row("guard", Text(f"within: at most {limit} worse allowed", style="green") if row.feasible else
                      Text(f"past it: more than {limit} worse (infeasible, never the best)", style="bold red"))
    rest = {k: v for k, v in _measured(m).items() if k not in SERVING and k not in (metric, f"val_{metric}")}
    for key, value in rest.items():
        table.add_row(fmt.metric_label(key), fmt.metric(key, value))
    return table


def _grid() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    return table


def _settings_table(settings: dict[str, Any], searched: dict[str, Any]) -> Table:
    table = _grid()
    for key, value in settings.items():
        table.add_row(f"{key}{' *' if key in searched else ''}", fmt.setting(value))
    if not settings:
        table.add_row("-", "")
    return table


def _metrics_table(values: dict[str, Any]) -> Table:
    table = _grid()
    for key, value in values.items():
        table.add_row(fmt.metric_label(key), fmt.metric(key, value))
    if not values:
        table.add_row("nothing measured yet", "")
    return table


def _notes_table(notes: dict[str, Any]) -> Table:
    table = _grid()
    for key, value in notes.items():
        table.add_row(key, fmt.setting(value) if isinstance(value, (bool, float)) else fmt.number(value))
    return table
