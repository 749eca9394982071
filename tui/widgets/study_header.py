"""The study screen's top lines: what is being tuned and by which metric (for an inference study:
serving which model, its objective and accuracy guard), progress, best,
speedup, time, and the noise and confirmation; for a study the daemon has not started, its place
in the daemon's queue or why it has no trials."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from autotune.formatting import confirmation_text, noise_text, speedup_factors_text
from autotune.metrics import Metric
from autotune.tui import format as fmt
from autotune.daemon.queue import QueuePlace
from autotune.tasks import task_of
from autotune.tui.widgets.latency_front import guard_text
from autotune.tui.widgets.text_pane import TextPane


def metric_text(summary: dict[str, Any]) -> str:
    """"metric accuracy ↑ (higher is better), target accuracy>=0.966": the primary metric, its
    direction and the target when there is one."""
    metric = Metric.from_dict(summary.get("metric_info"))
    arrow = "↑" if metric.higher_is_better else "↓"
    text = f"metric {metric.name} {arrow} ({'higher' if metric.higher_is_better else 'lower'} is better)"
    target = summary.get("target")
    return text + (f", target {metric.bound(target)}" if target is not None else "")


class StudyHeader(TextPane):
    DEFAULT_CSS = """
    StudyHeader { height: auto; max-height: 3; padding: 0 1; background: $panel;
                  text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, summary: dict[str, Any], queue: QueuePlace | None = None, waiting: str | None = None,
             reading: int | None = None) -> None:
        """`summary` as results.summary returns it; `queue` while the study is queued; `waiting`
        while it has no Optuna study yet (why: shown when the queue does not say it); `reading`:
        how many trials a big study's first, partial screen is still reading (no counts yet)."""
        objective = summary.get("objective") or "?"
        # one line each, whatever the terminal's width: the counts on the second must stay in
        # view; what is cut at the end of a line is in full in the verdict panel. Parts are
        # joined by " · ", so no two words meet where the style changes (a reader of the SVG
        # screenshots that trims each styled run must not see "demodigits").
        if task_of(summary).serves_model:  # serving a trained model: the objective and the guard
            first = _joined([
                Text(summary["name"], style="bold"), Text(f"serving {summary.get('workload') or '?'}"),
                Text("objective latency p50 at batch 1", style="magenta"),
                Text(f"guard {guard_text(summary)}", style="cyan"),
                Text(summary.get("budget") or "?"), Text(f"device {summary.get('device') or 'auto'}"),
            ])
        else:
            first = _joined([
                Text(summary["name"], style="bold"), Text(summary.get("workload") or "?"),
                Text(objective, style="magenta"), Text(metric_text(summary), style="cyan"),
                Text(f"budget {summary.get('budget') or '?'}"), Text(f"device {summary.get('device') or 'auto'}"),
            ])
        state = fmt.study_state(summary["state"])
        if queue is not None:
            state.append(f": {queue.describe()}", style="bold")
        elif waiting is not None:
            state.append(f": {waiting}", style="bold")
        if reading is not None:
            state.append(f": reading its {reading:,} trials", style="bold")
            self.set(Text("\n", no_wrap=True, overflow="ellipsis").join([first, state]))
            return
        parts = [state, Text(
            f"{summary['done']}/{summary['total']} trials"
            f" ({summary['complete']} ok, {summary['pruned']} pruned, {summary['failed']} failed"
            + (f", {summary['running']} running)" if summary["running"] else ")")
        )]
        if summary.get("best_number") is not None:
            best = fmt.objective_values(objective, summary.get("best_values"))
            parts.append(Text(f"best {best} (#{summary['best_number']})", style="bold green"))
        speedup = _speedup(summary)
        if speedup is not None:
            parts.append(speedup)
        parts.append(Text(f"elapsed {fmt.seconds(summary.get('elapsed'))}"))
        if summary.get("eta") is not None:
            parts.append(Text(f"ETA {fmt.seconds(summary['eta'])}"))
        lines = [first, _joined(parts)]
        third = []
        noise = noise_text(summary.get("noise"))
        if noise:
            third.append(Text(noise, style="yellow" if (summary.get("noise") or {}).get("noisy") else "dim"))
        confirmation = confirmation_text(summary.get("confirmation"))
        if confirmation:
            third.append(Text(confirmation))
        if third:
            lines.append(_joined(third))
        self.set(Text("\n", no_wrap=True, overflow="ellipsis").join(lines))


def _speedup(summary: dict[str, Any]) -> Text | None:
    """"confirmed speedup 3.90x (3.50x-4.20x) = same training 1.21x x recipe 3.22x" (the verdict
    panel names the systems settings), or the search's speedup while none is confirmed."""
    if summary.get("confirmed_speedup") is not None:
        low, high = summary.get("confirmed_range") or (None, None)
        spread = f" ({fmt.ratio(low)}-{fmt.ratio(high)})" if low is not None else ""
        factors = speedup_factors_text(summary.get("speedups"), systems=False)
        return Text(f"confirmed speedup {fmt.ratio(summary['confirmed_speedup'])}{spread}"
                    + (f" = {factors}" if factors else ""), style="bold")
    if summary.get("speedup") is not None:
        return Text(f"speedup {fmt.ratio(summary['speedup'])} in the search", style="bold")
    return None


def _joined(parts: list[Text]) -> Text:
    return Text(" · ", style="dim").join(parts)
