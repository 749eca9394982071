"""An inference study's trade-off between serving fast and keeping accuracy: the Pareto front of
latency p50 (one call at batch 1) against metric drop (relative to the unoptimized model, lower is
better on both), fastest first, as a small table with the accuracy guard under it. A trial past the
guard is on the front when nothing as fast keeps more accuracy: it is marked, and never the best.
The study screen hides this panel for training studies."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from autotune.metrics import Metric
from autotune.storage.trial_row import TrialRow
from autotune.tui import format as fmt
from autotune.tui.widgets.text_pane import TextPane


def guard_text(summary: dict[str, Any]) -> str:
    """"accuracy>=0.6122 (at most 1.0% worse than unoptimized 0.6184)": an inference study's
    accuracy guard, as far as the study knows it yet."""
    guard = summary.get("guard") or {}
    metric = Metric.from_dict(summary.get("metric_info"))
    bound = guard.get("bound")
    text = metric.bound(bound) if bound is not None else metric.name
    reference = guard.get("reference")
    worse = f"at most {fmt.percent(guard.get('max_drop'))} worse than unoptimized"
    return f"{text} ({worse} {fmt.metric(metric.name, reference)})" if reference is not None else f"{text} ({worse})"


class LatencyFront(TextPane):
    DEFAULT_CSS = """
    LatencyFront { height: auto; max-height: 12; padding: 0 1; }
    """

    def show(self, front: list[TrialRow], summary: dict[str, Any]) -> None:
        """`front`: results.inference_front's trials, fastest first; `summary`: results.summary's."""
        if not front:
            self.set(Text("no complete trial yet: no trade-off to show", style="dim"))
            return
        best = summary.get("best_number")
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"{'#':>4} {'latency p50':>11} {'drop':>6} {'size':>9}", style="bold")
        for row in front:
            star = "★" if row.number == best else ""
            m = row.metrics
            text.append("\n")
            text.append(f"{row.number:>3}{star or ' '} ", style="bold green" if star else "")
            text.append(f"{fmt.metric('latency_p50', m.get('latency_p50')):>11} "
                        f"{fmt.metric('metric_drop', m.get('metric_drop')):>6} "
                        f"{fmt.metric('model_bytes', m.get('model_bytes')):>9}")
            if not row.feasible:
                text.append("  ✗ guard", style="red")
        text.append(f"\nguard: {guard_text(summary)}", style="dim")
        self.set(text)
