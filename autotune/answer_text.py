"""How a study came to its answer, in lines for people (rich markup): the candidates not taken,
the riders dropped, the recipe checked at the run's length and the systems stage
(autotune.study.answer). Torch-free and Textual-free: the report, `study show` and the terminal
UI print the same lines."""

from __future__ import annotations

from typing import Any

from rich.markup import escape

from autotune.formatting import ratio, seconds, settings_text, validation


def answer_lines(answer: dict[str, Any] | None, metric: str) -> list[str]:
    """The lines for `answer` (the report's or the study's "answer" attr); none without one."""
    if not answer:
        return []
    lines = [rejected_line(row, metric) for row in answer.get("rejected") or []]
    if nothing_held(answer):
        lines.append("[yellow]no recipe of the search holds at your run's length[/]: the answer keeps the "
                     "baseline's recipe" + (" and only its systems settings change" if _systems_changed(answer)
                                            else ""))
    elif answer.get("trial") is None and answer.get("systems"):
        lines.append("no recipe of the search beat the baseline's: the answer keeps it"
                     + (" and only its systems settings change" if _systems_changed(answer) else ""))
    lines += [rider_line(row) for row in answer.get("riders") or [] if row.get("dropped")]
    if answer.get("horizon"):
        lines.append(horizon_line(answer["horizon"], metric))
    if answer.get("systems"):
        lines.append(systems_line(answer["systems"]))
    return lines


def nothing_held(answer: dict[str, Any] | None) -> bool:
    """Whether the search's candidates were all not taken, so the answer keeps the baseline's recipe."""
    return bool(answer and answer.get("rejected") and answer.get("trial") is None)


def rejected_line(row: dict[str, Any], metric: str) -> str:
    return f"[yellow]trial {row['trial']} not taken[/]: {escape(str(row.get('why')))}"


def rider_line(row: dict[str, Any]) -> str:
    """A dropped rider: its settings, back to the baseline's, and why."""
    changed = settings_text(row.get("settings") or {})
    back = settings_text(row.get("baseline") or {})
    how = f" ({ratio(row['ratio'])} by {row['by']})" if row.get("ratio") else ""
    return f"rider dropped: {escape(changed)} -> {escape(back)}{how}: {escape(str(row.get('why')))}"


def horizon_line(check: dict[str, Any], metric: str) -> str:
    """The answer's recipe at the run's length against the baseline's."""
    length = check.get("length_text", "the run's length")
    if check.get("holds") is None:
        return f"[yellow]not checked at your run's length ({length})[/]: {escape(str(check.get('why')))}"
    return (f"[green]holds at your run's length[/] ({length}): reaches the baseline's {metric} "
            f"{validation(check.get('target'))} there {ratio(check.get('speedup'))} sooner "
            f"({seconds(check.get('time'))} vs {seconds(check.get('baseline_time'))})")


def systems_line(fit: dict[str, Any]) -> str:
    """The systems stage: each value timed, and what it kept."""
    tried = fit.get("tried") or []
    if not tried:
        return "systems stage: nothing to time"
    parts = []
    for row in tried:
        result = ratio(row["ratio"]) if row.get("ratio") else escape(str(row.get("failed") or "-"))
        mark = " kept" if row.get("kept") else ("" if row.get("same_learning", True) else " learns differently")
        parts.append(f"{row['setting']} {row['from']}->{row['to']} {result}{mark}")
    kept = settings_text(fit.get("changed") or {}) or "none"
    return f"systems stage (paired step time): {escape(', '.join(parts))}; kept: {escape(kept)}"


def _systems_changed(answer: dict[str, Any]) -> bool:
    return bool((answer.get("systems") or {}).get("changed") or answer.get("same_training"))
