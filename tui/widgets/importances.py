"""Parameter importances (their shares of the variation of the objective) as horizontal bars."""

from __future__ import annotations

from rich.text import Text

from autotune.formatting import percent

from autotune.tui.widgets.text_pane import TextPane

BLOCKS = " ▏▎▍▌▋▊▉█"
MIN_COMPLETE = 3  # complete trials before importances mean anything (the study screen asks then)


class ImportanceBars(TextPane):
    DEFAULT_CSS = """
    ImportanceBars { height: auto; min-height: 3; }
    """

    def on_mount(self) -> None:
        self.show({}, 0)

    def show(self, importances: dict[str, float], complete: int, pending: bool = False,
             finished: bool = False, waiting: str | None = None) -> None:
        """Bars of `importances` over `complete` finished trials; without them, why: computing,
        `waiting` (no trials yet), or how many complete trials it takes (never "more" once the
        study has `finished`)."""
        if not importances:
            if pending:
                message = "computing ..."
            elif waiting is not None:
                message = f"none yet: {waiting}"
            elif complete < MIN_COMPLETE and finished:
                message = f"not computed: the study finished with {complete} complete trial(s), it takes {MIN_COMPLETE}"
            elif complete < MIN_COMPLETE:
                message = f"after {MIN_COMPLETE - complete} more complete trial(s)"
            else:
                message = "not enough variation among the complete trials to rank the knobs"
            self.set(Text(message, style="dim"))
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
            text.append(f" {percent(value)}")
        self.set(text)
