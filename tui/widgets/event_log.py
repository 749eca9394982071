"""The study's events (trial started, pruned and why, new best ...), newest at the bottom, each
wrapped to the pane's width (a reason is never cut)."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

KIND_STYLES = {
    "new_best": "bold green", "trial_complete": "green", "trial_pruned": "yellow",
    "trial_failed": "red", "study_paused": "yellow", "study_resumed": "cyan",
    "study_finished": "bold", "study_started": "bold",
}


class EventLog(RichLog):
    DEFAULT_CSS = """
    EventLog { height: 1fr; overflow-x: hidden; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_lines=500, wrap=True, markup=False, auto_scroll=True,
                         min_width=16, **kwargs)  # the default 78 would wrap wider than the pane

    def add(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            line = Text()
            line.append(time.strftime("%H:%M:%S ", time.localtime(event["ts"])), style="dim")
            line.append(event["message"], style=KIND_STYLES.get(event["kind"], ""))
            self.write(line, scroll_end=True)

    def note(self, text: str) -> None:
        """A line of the UI's own (why the pane is empty, say), dim to tell it from the study's events."""
        self.write(Text(text, style="dim italic"), scroll_end=True)
