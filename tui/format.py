"""The UI's formats: colours and short labels on top of autotune.formatting (numbers and units,
shared with the CLI). Nothing here decides digits or units."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from autotune.formatting import (
    metric, metric_label, nbytes, number, percent, rate, ratio, seconds, setting, speedup_factors_text,
)
from autotune.objectives import objective_unit, objective_value, objective_values

__all__ = ["compact_settings", "metric", "metric_label", "nbytes", "number", "objective_unit", "objective_value",
           "objective_values", "percent", "rate", "ratio", "seconds", "setting", "speedup_factors_text", "state",
           "study_state"]

STATE_STYLES = {
    "COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "bold cyan", "WAITING": "dim",
}
STUDY_STATE_STYLES = {
    "running": "bold cyan", "paused": "yellow", "stopping": "yellow", "queued": "bold yellow",
    "finished": "green", "stopped": "dim", "failed": "red",
}
# Short labels for settings in the trials table; unknown settings keep their name.
SHORT = {
    "batch_size": "bs", "learning_rate": "lr", "optimizer": "", "precision": "", "workers": "w",
    "pruning": "p", "momentum": "mom", "weight_decay": "wd", "beta2": "b2", "threads": "t",
    "channels_last": "cl", "torch_compile": "compile", "cudnn_benchmark": "cudnn",
    # inference knobs (an inference study's trials table)
    "serve_precision": "", "serve_batch_size": "bs", "serve_threads": "t", "serve_channels_last": "cl",
    "serve_compile": "compile", "int8_dynamic": "int8-dyn", "int8_static": "int8-static",
}


def state(name: str) -> Text:
    return Text(name.lower(), style=STATE_STYLES.get(name, ""))


def study_state(name: str | None) -> Text:
    return Text(name or "?", style=STUDY_STATE_STYLES.get(name or "", ""))


def compact_settings(params: dict[str, Any]) -> str:
    """bs=256 adamw lr=0.003 bf16 w=2 cl b2=0.999: the searched settings, short (true flags by
    name), each value with the digits that tell it apart (autotune.formatting.setting)."""
    parts = []
    for key, value in params.items():
        label = SHORT.get(key, key)
        if isinstance(value, bool):
            if value:
                parts.append(label or key)
            continue
        shown = setting(value)
        parts.append(f"{label}={shown}" if label else shown)
    return " ".join(parts)
