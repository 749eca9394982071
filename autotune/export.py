"""Write a trial's configuration as a file `autotune trial run --config FILE` reads back.

TOML (default) or JSON. Top-level keys: workload, study, trial, objective, value; then a
[settings] table with the trial's full resolved settings and a [metrics] table for reference.
autotune.config.load_config_file reads `workload` and `settings` and ignores the rest.
Torch-free. TOML is written by hand: values are flat str/int/float/bool (lists of them allowed).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from optuna.trial import FrozenTrial

from autotune.errors import UsageError
from autotune.results import StudyLike, TrialRow, best_row, study_objective, trial_rows

FORMATS = ("toml", "json")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def export_config(
    study: StudyLike, trial: int | FrozenTrial | TrialRow | None = None, fmt: str = "toml"
) -> str:
    """The config of `trial` (a number, FrozenTrial or TrialRow), or of the recommended trial
    (results.best_row)."""
    if fmt not in FORMATS:
        raise UsageError(f"export format {fmt!r}: choose toml or json")
    rows = trial_rows(study)
    if isinstance(trial, (FrozenTrial, TrialRow)):
        trial = trial.number
    if trial is None:
        row = best_row(study, rows)
        if row is None:
            raise UsageError(f"study '{study.study_name}' has no complete trial to export yet")
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
    data["settings"] = {k: v for k, v in row.settings.items() if v is not None}
    data["metrics"] = {k: v for k, v in row.metrics.items() if v is not None}
    return data


def _header(data: dict[str, Any]) -> str:
    lines = [f"# autotune: trial {data['trial']} of study '{data['study']}'"]
    if "value" in data:
        lines.append(f"# objective {data.get('objective', '?')}: {data['value']}")
    lines.append("# run it: autotune trial run --config THIS_FILE")
    return "\n".join(lines)


def to_toml(data: dict[str, Any], header: str = "") -> str:
    """A TOML document for a dict of scalars and one level of tables of scalars."""
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, dict)]
    out = [header] if header else []
    out += [f"{_key(k)} = {_value(v)}" for k, v in scalars]
    for name, table in tables:
        out += ["", f"[{_key(name)}]"]
        out += [f"{_key(k)} = {_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(out) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string without ASCII escaping is a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    raise UsageError(f"cannot write {type(value).__name__} value {value!r} to TOML")
