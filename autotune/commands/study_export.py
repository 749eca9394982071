"""`autotune study export NAME --model OUT`: the served model of an inference study's best
feasible trial (autotune.inference.export), with the trial's measured figures beside it as
`OUT.json`. Torch-free until the model is rebuilt, so that bad input fails at once."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from autotune.errors import UsageError
from autotune.storage.reading import StudyLike, trial_rows
from autotune.storage.results import best_row
from autotune.storage.speedups import speedup_factors
from autotune.storage.trial_row import TrialRow
from autotune.tasks import task_of

FIGURES = ("latency_p50", "latency_p95", "throughput", "batch_size", "peak_memory_bytes", "model_bytes",
           "compile_time", "metric_value", "metric_drop", "val_samples")


def chosen_trial(study: StudyLike, trial: int | None = None) -> TrialRow:
    """The inference study's trial to export: `trial`, or the best feasible one."""
    name = study.study_name
    spec = study.user_attrs.get("autotune") or {}
    if not task_of(spec).serves_model:
        raise UsageError(f"study '{name}' is a training study: --model exports an inference study's served "
                         f"model (export its configuration without --model)")
    if not spec.get("checkpoint"):
        raise UsageError(f"study '{name}' records no checkpoint to rebuild its served model from")
    rows = trial_rows(study)
    if trial is None:
        row = best_row(study, rows)
        if row is None:
            raise UsageError(f"study '{name}' has no complete feasible trial to export yet")
        return row
    row = next((r for r in rows if r.number == trial), None)
    if row is None or row.state != "COMPLETE" or not row.feasible:
        raise UsageError(f"study '{name}': trial {trial} is not a complete feasible trial")
    return row


def figures(study: StudyLike, row: TrialRow, written: dict[str, Any], out: str) -> dict[str, Any]:
    """What `OUT.json` holds: how to load the model, and what the trial measured serving it."""
    import torch

    metric = study.user_attrs.get("metric") or {}
    spec = study.user_attrs.get("autotune") or {}
    measured = {k: row.metrics.get(k) for k in FIGURES}
    if measured["batch_size"] is None:  # throughput's batch: the trial's serve_batch_size
        measured["batch_size"] = row.settings.get("serve_batch_size")
    return {
        "model": str(out), "format": written["format"], "why_not_exported": written.get("why"),
        "load": f"autotune.load_served({str(out)!r})",
        "study": study.study_name, "trial": row.number, "workload": spec.get("workload"),
        "checkpoint": spec.get("checkpoint"), "settings": dict(row.settings),
        "metric": {"name": metric.get("name"), "direction": metric.get("direction"),
                   "value": row.metrics.get("metric_value"), "drop": row.metrics.get("metric_drop"),
                   "reference": study.user_attrs.get("reference_metric")},
        "measured": measured, "times_in": "seconds; throughput in samples/s at batch_size",
        # the confirmed speedup as same training x recipe, when this is the trial it is of
        "speedups": speedup_factors(study.user_attrs, row.number, row.settings),
        "torch": torch.__version__, "python": platform.python_version(),
        "machine": {"hardware": study.user_attrs.get("hardware"), "platform": platform.platform(),
                    "during_trial": row.metrics.get("machine")},
    }


def export_model(study: StudyLike, out: str, trial: int | None = None, trust_pickle: bool = False) -> str:
    """Write the served model to `out` and its figures to `out.json`; the line to print.
    `trust_pickle`: the study's checkpoint may need pickle to read (--trust-pickle)."""
    row = chosen_trial(study, trial)
    from autotune.inference.export import write_served

    spec = study.user_attrs.get("autotune") or {}
    written = write_served(spec, dict(row.settings), out, trust_pickle=trust_pickle)
    side = Path(f"{out}.json")
    side.write_text(json.dumps(figures(study, row, written, out), indent=2, default=str) + "\n")
    kind = "torch.export program" if written["format"] == "exported_program" else f"recipe ({written['why']})"
    return (f"wrote trial {row.number}'s served model to {out} ({kind}) and its measured figures to {side}; "
            f"load it with autotune.load_served({str(out)!r})")
