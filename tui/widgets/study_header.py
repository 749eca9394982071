"""The study screen's top lines: what is being tuned, progress, best, speedup, time; for a study
the daemon has not started, its place in the daemon's queue or why it has no trials."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from autotune.formatting import why_faster_text
from autotune.metrics import Metric
from autotune.tui import format as fmt
from autotune.daemon.queue import QueuePlace
from autotune.tui.widgets.text_pane import TextPane


class StudyHeader(TextPane):
    DEFAULT_CSS = """
    StudyHeader { height: auto; max-height: 3; padding: 0 1; background: $panel; }
    """

    def show(self, summary: dict[str, Any], queue: QueuePlace | None = None, waiting: str | None = None) -> None:
        """`summary` as results.summary returns it; `queue` while the study is queued; `waiting`
        while it has no Optuna study yet (why: shown when the queue does not say it)."""
        objective = summary.get("objective") or "?"
        target = summary.get("target")
        # one line each, whatever the terminal's width: the counts on the second must stay in view
        first = Text()
        first.append(summary["name"], style="bold")
        first.append(f"  {summary.get('workload') or '?'}  ", style="")
        first.append(objective, style="magenta")
        # the metric and which way is better: accuracy>=0.9 with a target, val_loss ↓ before one
        metric = Metric.from_dict(summary.get("metric_info"))
        if target is not None:
            first.append(f"  {metric.bound(target)}", style="cyan")
        else:
            first.append(f"  {metric.name} {'↑' if metric.higher_is_better else '↓'}", style="cyan")
        first.append(f"  budget {summary.get('budget') or '?'}")
        first.append(f"  device {summary.get('device') or 'auto'}")
        second = Text()
        second.append_text(fmt.study_state(summary["state"]))
        if queue is not None:
            second.append(f": {queue.describe()}", style="bold")
        elif waiting is not None:
            second.append(f": {waiting}", style="bold")
        second.append(
            f"  {summary['done']}/{summary['total']} trials"
            f" ({summary['complete']} ok, {summary['pruned']} pruned, {summary['failed']} failed"
            + (f", {summary['running']} running)" if summary["running"] else ")")
        )
        if summary.get("best_number") is not None:
            best = fmt.objective_values(objective, summary.get("best_values"))
            second.append(f"  best {best} (#{summary['best_number']})", style="bold green")
        if summary.get("confirmed_speedup") is not None:
            low, high = summary.get("confirmed_range") or (None, None)
            spread = f" ({fmt.ratio(low)}-{fmt.ratio(high)})" if low is not None else ""
            second.append(f"  confirmed speedup {fmt.ratio(summary['confirmed_speedup'])}{spread}", style="bold")
        elif summary.get("speedup") is not None:
            second.append(f"  speedup {fmt.ratio(summary['speedup'])}", style="bold")
        second.append(f"  elapsed {fmt.seconds(summary.get('elapsed'))}")
        if summary.get("eta") is not None:
            second.append(f"  ETA {fmt.seconds(summary['eta'])}")
        lines = [first, second]
        third = Text()
        noise = summary.get("noise") or {}
        if noise.get("margin") is not None:
            third.append(f"noise ±{noise['margin']:.0%}", style="yellow" if noise.get("noisy") else "dim")
            if noise.get("noisy"):
                third.append(f" hides differences below {fmt.ratio(1 + noise['margin'])}", style="yellow")
        why = why_faster_text(summary.get("why_faster"))
        if why:
            third.append(("  " if third else "") + "why faster: ", style="bold")
            third.append(" · ".join(why))
        if third:
            lines.append(third)
        self.set(Text("\n", no_wrap=True, overflow="ellipsis").join(lines))
