"""Search space files: finding them (bundled names or paths), reading the TOML, checking every
table and value against the knobs, and merging a file with the one it `extends`.

Every problem raises SpaceError with one line naming file, knob and problem.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotune import tomlfile
from autotune.errors import SpaceError, UsageError
from autotune.knob import Param

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from autotune.hardware import Hardware
    from autotune.knob import Knob
    from autotune.registry import Registry

BUNDLE_PACKAGE = "autotune.search_spaces"
TOP_LEVEL_KEYS = ("extends", "only", "description", "knobs")
RANGE_KEYS = ("low", "high", "log", "step")
OVERRIDE_KEYS = (*RANGE_KEYS, "choices", "fixed", "search")


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class SpaceSource:
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


def _bundled(name: str) -> SpaceSource:
    file = importlib.resources.files(BUNDLE_PACKAGE) / f"{name}.toml"
    if not file.is_file():
        raise SpaceError(
            f"unknown search space '{name}' (bundled: {', '.join(bundled_names())}; "
            "for your own file give a path ending in .toml)"
        )
    return SpaceSource(f"search_spaces/{name}.toml", f"bundled:{name}", name, f"bundled:{name}", file)


def _path(label: str, path: Path) -> SpaceSource:
    return SpaceSource(label, str(path.resolve()), path.stem, label, path)


def locate(name_or_path: str | None) -> SpaceSource:
    if name_or_path is None or name_or_path == "default":
        return _bundled("default")
    text = str(name_or_path)
    return _bundled(text) if _is_bare_name(text) else _path(text, Path(text))


def locate_parent(value: Any, child: SpaceSource) -> SpaceSource:
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


def read(source: SpaceSource) -> dict[str, Any]:
    try:
        text = source.file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"search space {source.label}: file not found") from None
    except OSError as exc:
        raise SpaceError(f"search space {source.label}: cannot read: {exc.strerror}") from None
    try:
        data = tomlfile.loads(text)
    except tomlfile.TOMLDecodeError as exc:
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


def check_document(label: str, data: dict[str, Any], registry: "Registry", hardware: "Hardware") -> dict[str, Any]:
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


def merge(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
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


def apply_override(
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
                f"(accepted: {', '.join(map(show_value, accepted))})"
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
        raise SpaceError(f"{where}: low ({show_value(low)}) > high ({show_value(high)})")
    if log and low <= 0 and checked("log", "low"):
        raise SpaceError(f"{where}: log scale needs bounds > 0, got low ({show_value(low)})")
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
        raise SpaceError(f"{where}: {key} ({show_value(value)}) is below the valid minimum {show_value(lo)}")
    if hi is not None and value > hi:
        raise SpaceError(f"{where}: {key} ({show_value(value)}) is above the valid maximum {show_value(hi)}")
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
