"""What a study concluded, in full: the confirmation's interval, how it came to its answer
(candidates not taken, riders dropped, the run-length check, the systems stage), the speedup as
same training x recipe, the noise it measured (and the warning when the noise hides the differences it looks
for), and why the best is faster, one knob at a time. Hidden until the study has any of them (a
search still running has none)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from autotune.answer_text import answer_lines, nothing_held
from autotune.formatting import confirmation_text, noise_text, same_training_how, speedups_text, why_faster_text
from autotune.statuses import ACTIVE_STUDY_STATES
from autotune.tui.widgets.text_pane import TextPane


def verdict_text(summary: dict[str, Any]) -> Text | None:
    """The panel's lines, or None when there is nothing to say yet."""
    text = Text()
    confirmation = confirmation_text(summary.get("confirmation"))
    if confirmation is None and summary.get("state") not in ACTIVE_STUDY_STATES and summary.get("speedup") is not None:
        confirmation = ("no speedup: the search's best did not hold at your run's length"
                        if nothing_held(summary.get("answer"))
                        else "not confirmed: the study re-ran nothing (--confirm 0)")
    if confirmation:
        text.append("confirmation ", style="bold")
        text.append(confirmation, style="bold green" if confirmation.startswith("confirmed") else "yellow")
    metric = (summary.get("metric_info") or {}).get("name") or "the metric"
    for line in answer_lines(summary.get("answer"), metric):  # candidates not taken, riders, run length
        text.append(("\n" if text else "") + "answer ", style="bold")
        text.append(Text.from_markup(line))
    speedups = speedups_text(summary.get("speedups"))
    if speedups:
        text.append(("\n" if text else "") + "speedup ", style="bold")
        text.append(speedups.removeprefix("speedup "))
        how = same_training_how(summary.get("speedups"))
        if how:
            text.append(f"; {how}", style="dim")
    noise = summary.get("noise") or {}
    shown = noise_text(noise)
    if shown:
        text.append(("\n" if text else "") + "noise ", style="bold")
        text.append(shown.removeprefix("noise "), style="yellow" if noise.get("noisy") else "")
        if noise.get("noisy"):
            text.append("; an idle machine or more re-runs (--confirm 5) would tell them apart", style="yellow")
    steps = why_faster_text(summary.get("why_faster"))
    if steps:
        text.append(("\n" if text else "") + "why it is faster", style="bold")
        text.append(" (from the baseline, one knob at a time, each step measured):", style="dim")
        for i, line in enumerate(steps, start=1):
            text.append(f"\n {i}. {line}")
    return text if text else None


class VerdictPane(TextPane):
    DEFAULT_CSS = """
    VerdictPane { height: auto; max-height: 16; }
    """

    def show(self, summary: dict[str, Any]) -> None:
        text = verdict_text(summary)
        if self.display != (text is not None):
            self.display = text is not None
        if text is not None:
            self.set(text)
