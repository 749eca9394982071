"""The trials of one study, updated in place: new rows appended, changed rows' cells updated.

Only the most recent `cap` trials are kept as rows (a 10,000-trial study would otherwise cost
seconds to lay out); the border title says how many are hidden. The reason column holds each
reason whole (the table scrolls sideways); the reason pane under the table wraps it.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from autotune.metrics import Metric, metric_value
from autotune.storage.trial_row import TrialRow
from autotune.formatting import significant, validation
from autotune.tasks import task_of
from autotune.tui import format as fmt
from autotune.tui.widgets.reason import reason_of

COLUMNS = (
    ("number", "#"), ("state", "state"), ("settings", "settings"), ("value", "value"),
    ("throughput", "samples/s"), ("metric", "val acc"), ("duration", "time"), ("reason", "reason"),
)
# The value column only where it is not already throughput, accuracy or their Pareto mix.
VALUE_LABELS = {"time-to-accuracy": "to target"}
# An inference study's trials: what serving measured, the accuracy guard and the latency-vs-drop
# front (◆) in place of training's throughput and validation columns. Its value is latency p50.
INFERENCE_COLUMNS = (
    ("number", "#"), ("state", "state"), ("settings", "settings"), ("latency_p50", "p50"),
    ("latency_p95", "p95"), ("model_bytes", "size"), ("metric_drop", "drop"), ("guard", "guard"),
    ("front", "front"), ("duration", "time"), ("reason", "reason"),
)
FRONT_MARK = "◆"


class TrialsTable(DataTable):
    DEFAULT_CSS = """
    TrialsTable { height: 1fr; }
    """

    def __init__(self, cap: int = 500, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.cap = cap
        self.objective: str | None = None
        self.best_number: int | None = None
        self.rows_by_number: dict[int, TrialRow] = {}
        self.total = 0
        self.columns_for: str | None = None
        self.metric = Metric()
        self.serving = False  # an inference study: INFERENCE_COLUMNS
        self.front: set[int] = set()  # its trials on the latency-vs-drop front
        self.latest_with_reason: TrialRow | None = None  # the newest row that has a reason

    def _add_columns(self, objective: str | None) -> None:
        self.columns_for = objective or ""
        for key, label in self._columns():
            if key == "value":
                label = VALUE_LABELS.get(objective or "", label)
            elif key == "metric":  # the study's metric, with which way is better
                label = f"{'val acc' if self.metric.name == 'accuracy' else self.metric.name} {'↑' if self.metric.higher_is_better else '↓'}"
            self.add_column(label, key=key)

    def _columns(self) -> list[tuple[str, str]]:
        if self.serving:
            return list(INFERENCE_COLUMNS)
        keep_value = self.columns_for in VALUE_LABELS or self.columns_for == ""
        return [(k, label) for k, label in COLUMNS if k != "value" or keep_value]

    def apply(self, new: list[TrialRow], changed: list[TrialRow], total: int,
              objective: str | None, best_number: int | None, metric: dict[str, Any] | None = None,
              task: str | None = None) -> None:
        """`task`: the study's (results.summary's); a study serving a model shows latency columns."""
        self.objective = objective
        if self.columns_for is None:
            self.metric = Metric.from_dict(metric)
            self.serving = task_of({"task": task}).serves_model
            self._add_columns(objective)
        follow = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        if best_number != self.best_number:
            # Redraw the old and the new best (their star) unless they change anyway.
            previous, self.best_number = self.best_number, best_number
            numbers = {r.number for r in changed}
            changed = changed + [
                self.rows_by_number[n] for n in (previous, best_number)
                if n is not None and n in self.rows_by_number and n not in numbers
            ]
        for row in new[-self.cap:]:
            self.add_row(*self._cells(row), key=str(row.number))
            self.rows_by_number[row.number] = row
        for row in changed:
            if row.number not in self.rows_by_number:
                continue
            self.rows_by_number[row.number] = row
            for (key, _), cell in zip(self._columns(), self._cells(row)):
                self.update_cell(str(row.number), key, cell)
        for row in (*new[-self.cap:], *changed):
            if reason_of(row) and (self.latest_with_reason is None or row.number >= self.latest_with_reason.number):
                self.latest_with_reason = row
        excess = len(self.rows_by_number) - self.cap
        if excess > 0:
            for number in sorted(self.rows_by_number)[:excess]:
                self.remove_row(str(number))
                del self.rows_by_number[number]
        self.total = total
        hidden = total - len(self.rows_by_number)
        title = f"trials ({total:,})" if hidden <= 0 else (
            f"trials: latest {len(self.rows_by_number):,} of {total:,}"
        )
        if title != self.border_title:
            self.border_title = title
        if follow and new and self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def set_front(self, numbers: list[int]) -> None:
        """Mark the trials on an inference study's latency-vs-drop front (◆), unmarking the others."""
        new = set(numbers)
        if not self.serving or new == self.front:
            return
        changed, self.front = new ^ self.front, new
        for number in changed & set(self.rows_by_number):
            self.update_cell(str(number), "front", FRONT_MARK if number in new else "")

    def start_over(self) -> None:
        """Drop every row and column: the next `apply` lays the table out afresh (a study that
        has just appeared, maybe with another objective than its previous life)."""
        self.clear(columns=True)
        self.columns_for = None
        self.rows_by_number = {}
        self.best_number = None
        self.latest_with_reason = None
        self.total = 0
        self.serving = False
        self.front = set()

    def wait(self, reason: str) -> None:
        """No trials yet, and `reason` why, in the border title (apply replaces it)."""
        title = f"trials: none yet, {reason}"
        if title != self.border_title:
            self.border_title = title

    def selected(self) -> TrialRow | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.rows_by_number.get(int(key)) if key is not None else None

    def _cells(self, row: TrialRow) -> list[Any]:
        star = "★" if row.number == self.best_number else (" b" if row.baseline else "")
        metrics = row.metrics
        if self.serving:
            return self._serving_cells(row, star)
        # Optuna gives a pruned trial its last intermediate value: not an objective value.
        value = fmt.objective_values(self.objective, row.values) if row.state == "COMPLETE" else "-"
        throughput = metrics.get("throughput")
        cells = [
            Text(f"{row.number}{star}", style="bold green" if star == "★" else ""),
            fmt.state(row.state),
            fmt.compact_settings(row.params),
            value,
            significant(throughput) if isinstance(throughput, (int, float)) else "-",
            validation(metric_value(metrics, self.metric.name)),
            fmt.seconds(row.duration),
            Text(reason_of(row) or "", style="dim"),
        ]
        if len(self._columns()) < len(COLUMNS):
            del cells[3]
        return cells


    def _serving_cells(self, row: TrialRow, star: str) -> list[Any]:
        m = row.metrics
        complete = row.state == "COMPLETE"
        guard = (Text("ok", style="green") if row.feasible else Text("✗ past", style="bold red")) if complete else "-"
        return [
            Text(f"{row.number}{star}", style="bold green" if star == "★" else ""),
            fmt.state(row.state),
            fmt.compact_settings(row.params),
            fmt.metric("latency_p50", m.get("latency_p50")),
            fmt.metric("latency_p95", m.get("latency_p95")),
            fmt.metric("model_bytes", m.get("model_bytes")),
            fmt.metric("metric_drop", m.get("metric_drop")),
            guard,
            FRONT_MARK if row.number in self.front else "",
            fmt.seconds(row.duration),
            Text(reason_of(row) or "", style="dim"),
        ]
