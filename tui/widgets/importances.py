"""Parameter importances as horizontal bars."""

from __future__ import annotations

from rich.text import Text

from autotune.tui.widgets.text_pane import TextPane

BLOCKS = " ▏▎▍▌▋▊▉█"


class ImportanceBars(TextPane):
    DEFAULT_CSS = """
    ImportanceBars { height: auto; min-height: 3; }
    """

    def on_mount(self) -> None:
        self.show({}, 0)

    def show(self, importances: dict[str, float], complete: int, pending: bool = False) -> None:
        if not importances:
            if pending:
                self.set(Text("computing ...", style="dim"))
            elif complete < 3:
                self.set(Text(f"after {3 - complete} more complete trial(s)", style="dim"))
            else:
                self.set(Text("not enough variation yet", style="dim"))
            return
        label_w = max(len(k) for k in importances)
        bar_w = max(self.size.width - label_w - 8, 8)
        top = max(importances.values()) or 1.0
        text = Text(no_wrap=True, overflow="crop")
        for i, (name, value) in enumerate(importances.items()):
            eighths = round(value / top * bar_w * 8)
            bar = "█" * (eighths // 8) + (BLOCKS[eighths % 8] if eighths % 8 else "")
            if i:
                text.append("\n")
            text.append(f"{name:<{label_w}} ")
            text.append(f"{bar:<{bar_w}}", style="magenta")
            text.append(f" {value:.2f}")
        self.set(text)
