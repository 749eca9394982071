"""The UI's formats: colours and short labels on top of autotune.formatting (numbers and units)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from autotune.formatting import nbytes, number, ratio, seconds

__all__ = ["compact_settings", "nbytes", "number", "objective_value", "objective_values", "ratio", "seconds",
           "state", "study_state"]

STATE_STYLES = {
    "COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "bold cyan", "WAITING": "dim",
}
STUDY_STATE_STYLES = {
    "running": "bold cyan", "paused": "yellow", "stopping": "yellow", "queued": "dim",
    "finished": "green", "stopped": "dim", "failed": "red",
}
# Short labels for settings in the trials table; unknown settings keep their name.
SHORT = {
    "batch_size": "bs", "learning_rate": "lr", "optimizer": "", "precision": "", "workers": "w",
    "pruning": "p", "momentum": "mom", "weight_decay": "wd", "beta2": "b2", "threads": "t",
    "channels_last": "cl", "torch_compile": "compile", "cudnn_benchmark": "cudnn",
}


def state(name: str) -> Text:
    return Text(name.lower(), style=STATE_STYLES.get(name, ""))


def study_state(name: str | None) -> Text:
    return Text(name or "?", style=STUDY_STATE_STYLES.get(name or "", ""))


def compact_settings(params: dict[str, Any]) -> str:
    """bs=256 adamw lr=0.003 bf16 w=2 cl: the searched settings, short (true flags by name)."""
    parts = []
    for key, value in params.items():
        label = SHORT.get(key, key)
        if isinstance(value, bool):
            if value:
                parts.append(label or key)
            continue
        shown = number(value, 2) if isinstance(value, float) else str(value)
        parts.append(f"{label}={shown}" if label else shown)
    return " ".join(parts)


def objective_value(objective: str | None, value: float | None) -> str:
    if value is None:
        return "-"
    if objective == "time-to-accuracy":
        return seconds(value)
    if objective == "throughput":
        return f"{number(value)}/s"
    return number(value)


def objective_values(objective: str | None, values: list[float] | None) -> str:
    """One trial's objective value(s): 3.1s, 5,120/s, or acc 0.97 · 5,120/s · 143 MiB."""
    if not values:
        return "-"
    if len(values) == 1:
        return objective_value(objective, values[0])
    if objective == "pareto" and len(values) == 3:
        return f"acc {number(values[0], 3)} · {number(values[1])}/s · {nbytes(values[2])}"
    return " / ".join(number(v, 3) for v in values)
