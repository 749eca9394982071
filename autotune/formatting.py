"""How numbers, units and settings are written for people: one module for the CLI and the UI.

Torch-free and Textual-free (the terminal UI adds only colours, in autotune.tui.format).
"""

from __future__ import annotations

import math
from typing import Any, Iterable


def seconds(value: float | None) -> str:
    """3.2s, 4m05s, 2h03m."""
    if value is None or not math.isfinite(value):
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def number(value: Any, digits: int = 4) -> str:
    """A value on a screen: 0.9812, 1,797, 25,120 (thousands grouped), true."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def plain(value: Any, digits: int = 4) -> str:
    """A value in a report line or table: floats to `digits` significant digits, lists joined."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v, digits) for v in value)
    return str(value)


def nbytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "-"


def ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def values_text(values: Iterable[float] | None) -> str:
    """An objective's value(s): 12.31, or 0.9812, 5120, 1.433e+08."""
    values = list(values or ())
    return ", ".join(plain(v) for v in values) if values else "-"


def settings_text(settings: dict[str, Any], keys: Iterable[str] | None = None) -> str:
    """batch_size=128 optimizer=adamw learning_rate=0.003: floats to 3 significant digits."""
    items = settings.items() if keys is None else ((k, settings[k]) for k in keys if k in settings)
    return " ".join(f"{k}={plain(v, 3)}" for k, v in items)


def why_faster_text(path: dict[str, Any] | None) -> list[str]:
    """One line per step of the path from the baseline to the best (autotune.study.ablation):
    `learning_rate 0.0003 -> 0.003: 3.10x`."""
    lines = []
    for step in (path or {}).get("steps", []):
        change = ", ".join(f"{k} {plain(step['from'].get(k))} -> {plain(v)}" for k, v in step["to"].items())
        shown = ratio(step["ratio"]) if step.get("ratio") else f"no time ({step.get('status')})"
        lines.append(f"{change}: {shown}")
    return lines
