"""Write a trial's configuration as a file `autotune trial run --config FILE` reads back.

TOML (default) or JSON. Top-level keys: workload, study, trial, objective, value; then a
[settings] table with the trial's full resolved settings and a [metrics] table for reference;
for the trial the study confirmed, a [speedups] table: its speedup as same training x recipe
(autotune.storage.speedups.speedup_factors).
autotune.settings.load_config_file reads `workload` and `settings` and ignores the rest.
Torch-free. TOML through tomli-w.
"""

from __future__ import annotations

import json
from typing import Any

import tomli_w

from autotune.errors import UsageError
from autotune.formatting import speedups_text
from autotune.objectives import OBJECTIVES
from autotune.storage.reading import StudyLike, trial_rows
from autotune.storage.results import best_row, study_objective
from autotune.storage.speedups import speedup_factors
from autotune.storage.trial_row import TrialRow

FORMATS = ("toml", "json")


def export_config(study: StudyLike, trial: Any = None, fmt: str = "toml") -> str:
    """The config of `trial` (a number, FrozenTrial or TrialRow), or of the recommended trial
    (results.best_row)."""
    if fmt not in FORMATS:
        raise UsageError(f"export format {fmt!r}: choose toml or json")
    rows = trial_rows(study)
    if trial is not None and not isinstance(trial, int):
        trial = trial.number  # a FrozenTrial or a TrialRow
    if trial is None:
        row = best_row(study, rows)
        if row is None:
            raise UsageError(f"study '{study.study_name}' has no complete trial to export yet")
        answer = confirmed_answer(study.user_attrs)
        if answer is not None:
            data = answer_dict(study, row, answer)
            return json.dumps(data, indent=2) + "\n" if fmt == "json" else to_toml(data, header=_header(data))
    else:
        row = next((r for r in rows if r.number == trial), None)
        if row is None:
            raise UsageError(f"study '{study.study_name}' has no trial {trial} (it has {len(rows)} trials)")
    data = config_dict(study, row)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return to_toml(data, header=_header(data))


def config_dict(study: StudyLike, row: TrialRow) -> dict[str, Any]:
    attrs = study.user_attrs.get("autotune") or {}
    data: dict[str, Any] = {
        "workload": attrs.get("workload"),
        "study": study.study_name,
        "trial": row.number,
        "objective": attrs.get("objective") or study_objective(study),
    }
    if row.values is not None:
        data["value"] = row.values[0] if len(row.values) == 1 else list(row.values)
    data = {k: v for k, v in data.items() if v is not None}
    run = run_table(study.user_attrs)
    if run:
        data["run"] = run
    data["settings"] = {k: v for k, v in row.settings.items() if v is not None}
    # flat: the validation metrics beside the measured ones (notes and rates are nested)
    measured = {k: v for k, v in row.metrics.items() if v is not None and not isinstance(v, (dict, list))}
    data["metrics"] = {**(row.metrics.get("metrics") or {}), **(row.metrics.get("rates") or {}), **measured}
    speedups = speedup_factors(study.user_attrs, row.number, row.settings)
    if speedups is not None:
        data["speedups"] = speedups
    return data


def confirmed_answer(user_attrs: dict[str, Any]) -> dict[str, Any] | None:
    """The settings the study confirmed where they are not a trial's own (autotune.study.answer:
    riders dropped, systems knobs fitted after the search); None otherwise."""
    answer, confirmation = user_attrs.get("answer"), user_attrs.get("confirmation") or {}
    if not isinstance(answer, dict) or not answer.get("settings") or "runs" not in confirmation:
        return None
    return answer


def answer_dict(study: StudyLike, row: TrialRow, answer: dict[str, Any]) -> dict[str, Any]:
    """The config of the study's answer: the trial its recipe came from, with the answer's
    settings; no [metrics] table, which would be that trial's, not the answer's."""
    data = config_dict(study, row)
    data.pop("metrics", None)
    data.pop("value", None)
    data["trial"] = answer.get("trial") if answer.get("trial") is not None else row.number
    data["answer"] = "the confirmed answer: this trial's recipe without its riders, systems knobs fitted"
    data["settings"] = {k: v for k, v in answer["settings"].items() if v is not None}
    speedups = speedup_factors(study.user_attrs)
    if speedups is not None:
        data["speedups"] = speedups
    return data


def run_table(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """How the study ran its trials, so `trial run --config` repeats the run: the budget (epochs,
    steps or seconds), the target accuracy and how often validation ran."""
    attrs = user_attrs.get("autotune") or {}
    run: dict[str, Any] = {}
    budget = attrs.get("budget")
    if isinstance(budget, dict):
        run.update({k: v for k, v in budget.items() if k in ("epochs", "steps", "seconds") and v is not None})
    target = user_attrs.get("target", attrs.get("target"))
    if target is not None:
        run["target"] = target
        metric = user_attrs.get("metric") or {}
        if metric.get("name"):
            run["target_metric"] = metric["name"]
    if attrs.get("objective") in OBJECTIVES:
        run["evals_per_epoch"] = OBJECTIVES[attrs["objective"]].evals_per_epoch
        if OBJECTIVES[attrs["objective"]].evals_per_budget:
            run["evals_per_budget"] = OBJECTIVES[attrs["objective"]].evals_per_budget
    return run


def _header(data: dict[str, Any]) -> str:
    lines = [f"# autotune: trial {data['trial']} of study '{data['study']}'"]
    if "value" in data:
        lines.append(f"# objective {data.get('objective', '?')}: {data['value']}")
    speedup = speedups_text(data.get("speedups"))
    if speedup:
        lines.append(f"# {speedup}")
    lines.append("# run it: autotune trial run --config THIS_FILE")
    return "\n".join(lines)


def to_toml(data: dict[str, Any], header: str = "") -> str:
    """A TOML document for a dict of scalars and tables of scalars; None values are left out."""
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value if v is not None]
        return value

    try:
        text = tomli_w.dumps(clean(data))
    except TypeError as exc:
        raise UsageError(f"cannot write this configuration as TOML: {exc}") from None
    return f"{header}\n{text}" if header else text
