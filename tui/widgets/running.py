"""Running trials: progress over the budget, samples/s history and memory, one block per trial."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar, Sparkline

from autotune.tui import format as fmt

HISTORY = 60  # polls of samples/s kept for the sparkline


class RunningTrial(Vertical):
    """One live_trials row; `show(row)` on every poll appends to the samples/s history. Rows shown
    before the widget is mounted are kept and shown, in order, once it is."""

    DEFAULT_CSS = """
    RunningTrial { height: 2; }
    RunningTrial Horizontal { height: 1; }
    RunningTrial ProgressBar { width: 34; }
    RunningTrial Sparkline { width: 1fr; height: 1; }
    RunningTrial .line { width: 1fr; }
    """

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(id=f"running-{row['number']}")
        self.number: int = row["number"]
        self.history: deque[float] = deque(maxlen=HISTORY)
        # Polls can arrive faster than a mount completes: rows for widgets not composed yet wait here.
        self._pending: list[dict[str, Any]] | None = [row]
        self._last_update: tuple[Any, Any] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield ProgressBar(total=1.0, show_eta=False)
            yield Sparkline([], summary_function=max)
        yield Label("", classes="line")

    def on_mount(self) -> None:
        pending, self._pending = self._pending or [], None
        for row in pending:
            self.show(row)

    def show(self, row: dict[str, Any]) -> None:
        if self._pending is not None:
            self._pending.append(row)
            return
        key = (row.get("updated_at"), row.get("kill_requested"))
        if key == self._last_update:
            return  # the runner has not reported since the last poll
        self._last_update = key
        if row.get("samples_per_s") is not None:
            self.history.append(float(row["samples_per_s"]))
            self.query_one(Sparkline).data = list(self.history)
        self.query_one(ProgressBar).update(progress=min(float(row.get("fraction") or 0.0), 1.0))
        step, total = row.get("step"), row.get("total_steps")
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"trial {self.number}:", style="bold cyan")
        text.append(" ")
        text.append(f"{fmt.percent(row.get('fraction'))} of the budget, step {fmt.metric('step', step)}"
                    f"/{fmt.metric('total_steps', total) if total else '?'}  ")
        text.append(f"{fmt.rate(row.get('samples_per_s'))}  ")
        text.append(f"peak memory {fmt.nbytes(row.get('peak_memory_bytes'))}  ")
        text.append(f"trained {fmt.seconds(row.get('train_time'))}")
        if row.get("kill_requested"):
            text.append("  kill requested", style="bold red")
        self.query_one(Label).update(text)


class RunningPane(Vertical):
    DEFAULT_CSS = """
    RunningPane { height: auto; max-height: 9; }
    RunningPane > .idle { color: $text-muted; }
    """

    def compose(self) -> ComposeResult:
        yield Label("no trial running", classes="idle")

    def show(self, live: list[dict[str, Any]]) -> None:
        current = {w.number: w for w in self.query(RunningTrial)}
        numbers = {row["number"] for row in live}
        for number, widget in current.items():
            if number not in numbers:
                widget.remove()
        for row in live:
            widget = current.get(row["number"])
            if widget is None:
                self.mount(RunningTrial(row))
            else:
                widget.show(row)
        self.query_one(".idle", Label).display = not live
