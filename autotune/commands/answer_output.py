"""The end of a study's report, printed: how it came to its answer (autotune.answer_text), its
speedup as same training x recipe, and why it is faster."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from autotune.answer_text import answer_lines
from autotune.formatting import same_training_how, speedups_text, why_faster_text


def print_answer(console: Console, answer: dict[str, Any] | None, metric: str) -> None:
    for line in answer_lines(answer, metric):
        console.print(line)


def print_speedups(console: Console, speedups: dict[str, Any] | None) -> None:
    """The speedup as same training x recipe, and how the same-training factor was measured."""
    line = speedups_text(speedups)
    if line:
        console.print(escape(line))
        how = same_training_how(speedups)
        if how:
            console.print(f"  [dim]{escape(how)}[/]")


def print_why_faster(console: Console, path: dict[str, Any] | None) -> None:
    lines = why_faster_text(path)
    if lines:
        console.print("[bold]why it is faster[/] (the path from the baseline, one knob at a time, each measured):")
        for line in lines:
            console.print("  " + escape(line))
