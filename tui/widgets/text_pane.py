"""Static text that repaints only when its text changes (polls redraw the same text every second)."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import Static


class TextPane(Static):
    def set(self, content: RenderableType) -> None:
        """Show `content`; no repaint when unchanged, no relayout when a Text keeps its line count."""
        old = self.content
        if isinstance(content, Text) and isinstance(old, Text):
            if content == old:
                return
            self.update(content, layout=content.plain.count("\n") != old.plain.count("\n"))
            return
        self.update(content)
