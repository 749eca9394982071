"""Search spaces: which settings a study searches, over what ranges, and which it pins.

A space is a TOML file (format documented at the top of search_spaces/default.toml) that lists
only the knobs it changes; every other available knob keeps the default space from
`Knob.params(hardware)`. Bundled spaces ship as package data in `autotune.search_spaces`.

Every problem in a space file raises SpaceError with one line naming file, knob and problem:
"search_spaces/cpu.toml: knob 'batch_size': low (512) > high (64)".
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotune.errors import SpaceError, UsageError
from autotune.knob import Param

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import optuna

    from autotune.hardware import Hardware
    from autotune.knob import Knob
    from autotune.registry import Registry

BUNDLE_PACKAGE = "autotune.search_spaces"
TOP_LEVEL_KEYS = ("extends", "only", "description", "knobs")
RANGE_KEYS = ("low", "high", "log", "step")
OVERRIDE_KEYS = (*RANGE_KEYS, "choices", "fixed", "search")

LEFT_OUT = "left out by the space"
NOT_IN_ONLY = "not in this space's `only` list"


@dataclass
class SearchSpace:
    """A resolved search space for one registry on one machine.

    `params` are the searched settings in knob registration order (a knob's primary param before
    its conditional sub-params); `fixed` are settings pinned to one value; `excluded` maps each
    knob that is not searched to why (it keeps its baseline value); `knobs` maps every setting
    name to its knob.
    """

    source: str
    name: str
    params: list[Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    knobs: dict[str, str] = field(default_factory=dict)
    description: str = ""
    # Conditions of fixed settings, so a pin like momentum=0.9 is dropped when adam is chosen.
    fixed_when: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict, repr=False)

    def suggest(self, trial: "optuna.Trial") -> dict[str, Any]:
        """Suggest every searched param whose condition holds; return {**fixed, **suggested}.

        Params are suggested in order, so a conditional param sees the values chosen before it.
        Fixed settings whose condition does not hold on the result are left out.
        """
        values = dict(self.fixed)
        for param in self.params:
            if param.active(values):
                values[param.name] = _suggest_one(trial, param)
        return {
            key: value for key, value in values.items() if _holds(self.fixed_when.get(key), values)
        }

    def distributions(self) -> dict[str, "optuna.distributions.BaseDistribution"]:
        """Optuna distributions of the searched params (to enqueue or validate known settings)."""
        return {param.name: _distribution(param) for param in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "params": [self._param_dict(p) for p in self.params],
            "fixed": dict(self.fixed),
            "excluded": dict(self.excluded),
        }

    def _param_dict(self, param: Param) -> dict[str, Any]:
        return {
            "name": param.name,
            "knob": self.knobs.get(param.name),
            "type": param.type,
            "low": param.low,
            "high": param.high,
            "log": param.log,
            "step": param.step,
            "choices": list(param.choices) if param.type in ("categorical", "bool") else None,
            "when": {k: list(v) for k, v in param.when.items()} if param.when else None,
        }

    def describe(self) -> str:
        """A readable table for `autotune space show`."""
        lines = [f"search space {self.name} ({self.source})"]
        if self.description:
            lines.append(f"  {self.description}")
        lines.append("searched:")
        rows = [_describe_row(p) for p in self.params]
        lines.extend(_table(rows) if rows else ["  (nothing)"])
        if self.fixed:
            lines.append("fixed:")
            lines.extend(_table([[k, "=", _show(v)] for k, v in self.fixed.items()]))
        if self.excluded:
            lines.append("excluded (baseline value):")
            lines.extend(_table([[k, reason] for k, reason in self.excluded.items()]))
        return "\n".join(lines)


def _holds(when: dict[str, tuple[Any, ...]] | None, values: dict[str, Any]) -> bool:
    return all(values.get(key) in allowed for key, allowed in (when or {}).items())


def _suggest_one(trial: "optuna.Trial", param: Param) -> Any:
    if param.type == "int":
        step = int(param.step) if param.step else 1
        return trial.suggest_int(param.name, int(param.low), int(param.high), step=step, log=param.log)
    if param.type == "float":
        return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_categorical(param.name, list(param.choices))


def _distribution(param: Param) -> "optuna.distributions.BaseDistribution":
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.type == "int":
        step = int(param.step) if param.step else 1
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=step)
    if param.type == "float":
        return FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    return CategoricalDistribution(list(param.choices))


def _describe_row(param: Param) -> list[str]:
    if param.type in ("int", "float"):
        span = f"{_show(param.low)} .. {_show(param.high)}"
        if param.step:
            span += f" step {_show(param.step)}"
    else:
        span = ", ".join(map(_show, param.choices))
    condition = ""
    if param.when:
        condition = "when " + "; ".join(
            f"{k} in ({', '.join(map(_show, v))})" for k, v in param.when.items()
        )
    return [param.name, param.type, span, "log" if param.log else "", condition]


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- locating and reading files -------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    label: str  # how messages name it: the path as given, or search_spaces/<name>.toml
    key: str  # identity for cycle detection
    name: str
    source: str  # SearchSpace.source
    file: "Traversable"


def bundled_names() -> list[str]:
    """Names of the spaces that ship with autotune."""
    root = importlib.resources.files(BUNDLE_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def _is_bare_name(text: str) -> bool:
    return "/" not in text and "\\" not in text and not text.endswith(".toml")


def _bundled(name: str) -> _Source:
    file = importlib.resources.files(BUNDLE_PACKAGE) / f"{name}.toml"
    if not file.is_file():
        raise SpaceError(
            f"unknown search space '{name}' (bundled: {', '.join(bundled_names())}; "
            "for your own file give a path ending in .toml)"
        )
    return _Source(f"search_spaces/{name}.toml", f"bundled:{name}", name, f"bundled:{name}", file)


def _path(label: str, path: Path) -> _Source:
    return _Source(label, str(path.resolve()), path.stem, label, path)


def _locate(name_or_path: str | None) -> _Source:
    if name_or_path is None or name_or_path == "default":
        return _bundled("default")
    text = str(name_or_path)
    return _bundled(text) if _is_bare_name(text) else _path(text, Path(text))


def _locate_parent(value: Any, child: _Source) -> _Source:
    """`extends`: a bundled name, or a path relative to the file that extends."""
    if not isinstance(value, str) or not value:
        raise SpaceError(f"{child.label}: extends must be a space name or a path, got {value!r}")
    if isinstance(child.file, Path) and not _is_bare_name(value):
        return _path(str(Path(child.label).parent / value), child.file.parent / value)
    # A bare name, or a path inside a zipped install (no filesystem parent): a bundled space.
    try:
        return _bundled(Path(value).stem if value.endswith(".toml") else value)
    except SpaceError as exc:
        raise SpaceError(f"{child.label}: extends: {exc}") from None


def _read(source: _Source) -> dict[str, Any]:
    try:
        text = source.file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"search space {source.label}: file not found") from None
    except OSError as exc:
        raise SpaceError(f"search space {source.label}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line N, column M)".
        raise SpaceError(f"{source.label}: invalid TOML: {exc}") from None
    unknown = [key for key in data if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise SpaceError(
            f"{source.label}: unknown top-level key '{unknown[0]}' (accepted: {', '.join(TOP_LEVEL_KEYS)})"
        )
    return data


# --- normalising a document -----------------------------------------------------------------
# A document is {"only": list | None, "description": str, "knobs": {knob: {setting: {key: value}}},
# "labels": {(knob, setting): file}}; labels name the file that last set each setting, for errors.


def _document(label: str, data: dict[str, Any], registry: "Registry", hardware: "Hardware") -> dict[str, Any]:
    only = data.get("only")
    if only is not None:
        if not isinstance(only, list) or not all(isinstance(n, str) for n in only):
            raise SpaceError(f"{label}: only must be a list of knob names, got {only!r}")
        for name in only:
            _check_known(label, name, registry, "listed in `only` but ")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpaceError(f"{label}: description must be a string")
    tables = data.get("knobs", {})
    if not isinstance(tables, dict):
        raise SpaceError(f"{label}: knobs must be tables like [knobs.batch_size]")
    knobs: dict[str, dict[str, dict[str, Any]]] = {}
    for name, table in tables.items():
        _check_known(label, name, registry)
        if name in registry.disabled:
            continue  # no params to check against; the knob is excluded anyway
        knob = registry.knobs[name]
        knobs[name] = _split_knob_table(label, knob, table, knob.params(hardware))
    labels = {(name, setting): label for name, tables in knobs.items() for setting in tables}
    return {"only": only, "description": description, "knobs": knobs, "labels": labels}


def _check_known(label: str, name: str, registry: "Registry", context: str = "") -> None:
    if name not in registry.knobs and name not in registry.disabled:
        known = ", ".join(registry.knobs)
        raise SpaceError(f"{label}: knob '{name}': {context}not a known knob (known: {known})")


def _split_knob_table(
    label: str, knob: "Knob", table: Any, params: list[Param]
) -> dict[str, dict[str, Any]]:
    """[knobs.optimizer] -> {"optimizer": {...}, "momentum": {...}}, checking every key."""
    where = f"{label}: knob '{knob.name}'"
    if not isinstance(table, dict):
        raise SpaceError(f"{where}: expected a table [knobs.{knob.name}], got {table!r}")
    primary, subs = params[0].name, [p.name for p in params[1:]]
    settings: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if key in OVERRIDE_KEYS:
            settings.setdefault(primary, {})[key] = value
        elif key in subs:
            if not isinstance(value, dict):
                raise SpaceError(
                    f"{where}: '{key}' must be a table [knobs.{knob.name}.{key}] of "
                    f"{', '.join(OVERRIDE_KEYS[:-1])}"
                )
            settings[key] = _check_sub_table(where, key, value)
        else:
            accepted = ", ".join(OVERRIDE_KEYS)
            if subs:
                accepted += f"; sub-settings: {', '.join(subs)}"
            raise SpaceError(f"{where}: unknown key '{key}' (accepted: {accepted})")
    return settings


def _check_sub_table(where: str, setting: str, table: dict[str, Any]) -> dict[str, Any]:
    for key in table:
        if key == "search":
            raise SpaceError(
                f"{where}: setting '{setting}': search applies to the whole knob; "
                "pin a sub-setting with fixed"
            )
        if key not in OVERRIDE_KEYS:
            raise SpaceError(
                f"{where}: setting '{setting}': unknown key '{key}' "
                f"(accepted: {', '.join(OVERRIDE_KEYS[:-1])})"
            )
    return dict(table)


def _merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child over parent, key by key; a child's explicit range, choices or pin replaces the
    parent's other forms (and its `search = false`), so the two never combine into a conflict."""
    knobs = {name: {s: dict(t) for s, t in tables.items()} for name, tables in parent["knobs"].items()}
    for name, tables in child["knobs"].items():
        merged = knobs.setdefault(name, {})
        for setting, table in tables.items():
            merged[setting] = _merge_setting(merged.get(setting, {}), table)
    return {
        "only": child["only"] if child["only"] is not None else parent["only"],
        "description": child["description"] or parent["description"],
        "knobs": knobs,
        "labels": {**parent["labels"], **child["labels"]},
    }


def _merge_setting(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    groups = {"range": set(RANGE_KEYS), "choices": {"choices"}, "fixed": {"fixed"}}
    result = dict(parent)
    for keys in groups.values():
        if keys & child.keys():
            drop = set().union(*(g for g in groups.values() if g is not keys)) | {"search"}
            result = {k: v for k, v in result.items() if k not in drop}
    result.update(child)
    return result


# --- validating one setting ----------------------------------------------------------------


_UNSET = object()


def _apply_override(
    where: str, param: Param, table: dict[str, Any], partial: bool = False
) -> tuple[Param | None, Any]:
    """(searched param, _UNSET) or (None, fixed value) for one setting's override table.

    `partial`: the table is one file of an `extends` chain, so checks that combine a key with a
    default (low against the default high) wait for the merged table.
    """
    search = table.get("search", True)
    if not isinstance(search, bool):
        raise SpaceError(f"{where}: search must be true or false, got {search!r}")
    present = [k for k in RANGE_KEYS + ("choices",) if k in table]
    if "fixed" in table:
        if present:
            raise SpaceError(f"{where}: fixed cannot be combined with {', '.join(present)}")
        return None, _fixed(where, param, table["fixed"])
    if "choices" in table:
        ranged = [k for k in RANGE_KEYS if k in table]
        if ranged:
            raise SpaceError(f"{where}: choices cannot be combined with {', '.join(ranged)}")
        return _with_choices(where, param, table["choices"]), _UNSET
    if param.type in ("categorical", "bool") and present:
        raise SpaceError(
            f"{where}: '{param.name}' is {param.type}: use choices, not {', '.join(present)}"
        )
    return _with_range(where, param, table, partial) if present else param, _UNSET


def _fixed(where: str, param: Param, value: Any) -> Any:
    try:
        return param.coerce(value)
    except UsageError as exc:
        detail = str(exc).removeprefix(f"setting '{param.name}': ")
        raise SpaceError(f"{where}: fixed = {value!r}: {detail}") from None


def _with_choices(where: str, param: Param, choices: Any) -> Param:
    if not isinstance(choices, list) or not choices:
        raise SpaceError(f"{where}: choices must be a non-empty list, got {choices!r}")
    if param.type in ("int", "float"):
        # A numeric setting searched over listed values (batch sizes that are powers of two).
        values = tuple(_bound(where, param, "choice", c) for c in choices)
        _no_duplicates(where, values)
        return dataclasses.replace(
            param, type="categorical", choices=values, low=None, high=None, log=False, step=None
        )
    accepted = param.allowed_choices
    values = []
    for choice in choices:
        # 1 == True in Python: a bool choice must not match an int value or the reverse.
        match = [a for a in accepted if a == choice and isinstance(a, bool) == isinstance(choice, bool)]
        if not match:
            raise SpaceError(
                f"{where}: choice {choice!r} is not accepted "
                f"(accepted: {', '.join(map(_show, accepted))})"
            )
        values.append(match[0])
    _no_duplicates(where, tuple(values))
    return dataclasses.replace(param, choices=tuple(values))


def _no_duplicates(where: str, values: tuple[Any, ...]) -> None:
    for i, value in enumerate(values):
        if value in values[:i]:
            raise SpaceError(f"{where}: choice {value!r} is listed twice")


def _with_range(where: str, param: Param, table: dict[str, Any], partial: bool) -> Param:
    low = _bound(where, param, "low", table.get("low", param.low))
    high = _bound(where, param, "high", table.get("high", param.high))
    log = table.get("log", param.log)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: log must be true or false, got {log!r}")
    step = table.get("step", param.step)
    if step is not None:
        step = _step(where, param, step)

    def checked(*keys: str) -> bool:
        return not partial or all(k in table for k in keys)

    if low > high and checked("low", "high"):
        raise SpaceError(f"{where}: low ({_show(low)}) > high ({_show(high)})")
    if log and low <= 0 and checked("log", "low"):
        raise SpaceError(f"{where}: log scale needs bounds > 0, got low ({_show(low)})")
    if log and step is not None and checked("log", "step"):
        # Optuna samples either on a log scale or on a grid, not both.
        raise SpaceError(f"{where}: log and step cannot be combined (set log = false)")
    return dataclasses.replace(param, low=low, high=high, log=log, step=step)


def _bound(where: str, param: Param, key: str, value: Any) -> int | float:
    """A number of the param's type inside `Param.valid`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{where}: {key} must be a number, got {value!r}")
    if param.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise SpaceError(f"{where}: {key} must be an integer, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    lo, hi = param.valid
    if lo is not None and value < lo:
        raise SpaceError(f"{where}: {key} ({_show(value)}) is below the valid minimum {_show(lo)}")
    if hi is not None and value > hi:
        raise SpaceError(f"{where}: {key} ({_show(value)}) is above the valid maximum {_show(hi)}")
    return value


def _step(where: str, param: Param, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise SpaceError(f"{where}: step must be a positive number, got {value!r}")
    if param.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise SpaceError(f"{where}: step must be an integer, got {value!r}")
        return int(value)
    return float(value)


# --- building the space ---------------------------------------------------------------------


def load_space(name_or_path: str | None, registry: "Registry", hardware: "Hardware") -> SearchSpace:
    """Load a search space: None or "default", a bundled name, or a path to a TOML file.

    Raises SpaceError (one line naming file, knob and problem) for anything malformed.
    """
    top = _locate(name_or_path)
    document = _load_document(top, registry, hardware, chain=())
    return _build(top, document, registry, hardware)


def _load_document(
    source: _Source, registry: "Registry", hardware: "Hardware", chain: tuple[_Source, ...]
) -> dict[str, Any]:
    """Read `source` and everything it extends; each file is checked on its own first, so an
    error names the file that holds it."""
    if source.key in {s.key for s in chain}:
        path = " -> ".join(s.label for s in (*chain, source))
        raise SpaceError(f"{chain[-1].label}: extends cycle: {path}")
    data = _read(source)
    document = _document(source.label, data, registry, hardware)
    _resolve_knobs(document, registry, hardware, partial=True)
    if "extends" not in data:
        return document
    parent = _locate_parent(data["extends"], source)
    return _merge(_load_document(parent, registry, hardware, (*chain, source)), document)


def _build(source: _Source, document: dict[str, Any], registry: "Registry", hardware: "Hardware") -> SearchSpace:
    params, fixed, fixed_when, excluded = _resolve_knobs(document, registry, hardware)
    params, fixed = _drop_unreachable(params, fixed, fixed_when)
    return SearchSpace(
        source=source.source,
        name=source.name,
        params=params,
        fixed=fixed,
        excluded=excluded,
        knobs={p.name: k.name for k in registry.knobs.values() for p in k.params(hardware)},
        description=document["description"],
        fixed_when={k: v for k, v in fixed_when.items() if k in fixed},
    )


def _resolve_knobs(
    document: dict[str, Any], registry: "Registry", hardware: "Hardware", partial: bool = False
) -> tuple[list[Param], dict[str, Any], dict[str, dict[str, tuple[Any, ...]]], dict[str, str]]:
    params: list[Param] = []
    fixed: dict[str, Any] = {}
    fixed_when: dict[str, dict[str, tuple[Any, ...]]] = {}
    excluded: dict[str, str] = {}
    for knob in registry.knobs.values():
        overrides = document["knobs"].get(knob.name, {})
        knob_params = knob.params(hardware)
        # Check every listed setting even when the knob is left out: a typo in gpu.toml should
        # fail on a CPU machine too.
        outcomes = [
            _apply_override(
                _where(document, knob, p, i == 0), p, overrides.get(p.name, {}), partial
            )
            for i, p in enumerate(knob_params)
        ]
        reason = _exclusion(knob, document, overrides.get(knob_params[0].name, {}), hardware)
        if reason is not None:
            excluded[knob.name] = reason
            continue
        for param, (searched, value) in zip(knob_params, outcomes):
            if searched is not None and not _single_choice(searched):
                params.append(searched)
            else:
                # one allowed value is a pin, not a dimension (data_parallel on CPU: "none")
                fixed[param.name] = value if searched is None else searched.choices[0]  # type: ignore[index]
                if param.when:
                    fixed_when[param.name] = param.when
    excluded.update(registry.disabled)
    return params, fixed, fixed_when, excluded


def _single_choice(param: Param) -> bool:
    return param.type in ("categorical", "bool") and len(param.choices or ()) == 1


def _where(document: dict[str, Any], knob: "Knob", param: Param, primary: bool) -> str:
    label = document["labels"].get((knob.name, param.name), "?")
    where = f"{label}: knob '{knob.name}'"
    return where if primary else f"{where}: setting '{param.name}'"


def _exclusion(
    knob: "Knob", document: dict[str, Any], primary: dict[str, Any], hardware: "Hardware"
) -> str | None:
    reason = knob.unavailable(hardware)
    if reason is not None:
        return reason
    only = document["only"]
    if only is not None and knob.name not in only:
        return NOT_IN_ONLY
    return None if primary.get("search", True) else LEFT_OUT


def _drop_unreachable(
    params: list[Param], fixed: dict[str, Any], fixed_when: dict[str, dict[str, tuple[Any, ...]]]
) -> tuple[list[Param], dict[str, Any]]:
    """Leave out conditional settings whose condition can never hold in this space (momentum
    when optimizer is pinned to adam), so `space show` lists only what a trial can use."""
    possible: dict[str, set[Any] | None] = {k: {v} for k, v in fixed.items()}
    for param in params:
        numeric = param.type in ("int", "float")
        possible[param.name] = None if numeric else set(param.choices)

    def reachable(when: dict[str, tuple[Any, ...]] | None) -> bool:
        for key, allowed in (when or {}).items():
            if key not in possible:
                return False
            values = possible[key]
            if values is not None and not values & set(allowed):
                return False
        return True

    kept = [p for p in params if reachable(p.when)]
    return kept, {k: v for k, v in fixed.items() if reachable(fixed_when.get(k))}
