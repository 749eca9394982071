"""Settings: the flat {setting: value} dict a run is configured by.

Resolution: every available knob's baseline, then the workload's recipe, then the user's values.
Conditional settings that do not apply (momentum under Adam) are dropped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotune import tomlfile
from autotune.errors import UsageError
from autotune.knob import Knob, Param, exclusion

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.workloads import Workload


def settings_index(registry: "Registry", hardware: "Hardware") -> dict[str, tuple[Knob, Param]]:
    """Every setting name of every loaded knob -> (knob, param)."""
    index: dict[str, tuple[Knob, Param]] = {}
    for knob in registry.knobs.values():
        for param in knob.params(hardware):
            index[param.name] = (knob, param)
    return index


def baseline_settings(
    registry: "Registry", hardware: "Hardware", workload: "Workload"
) -> dict[str, Any]:
    """The untuned run: knob baselines overlaid with the workload's recipe."""
    return _drop_inactive(_every_baseline(registry, hardware, workload), settings_index(registry, hardware))


def _every_baseline(registry: "Registry", hardware: "Hardware", workload: "Workload") -> dict[str, Any]:
    """Every baseline value, conditional ones whose condition does not hold included: an override
    that makes one active (data_parallel=ddp) finds the knob's default for it."""
    index = settings_index(registry, hardware)
    settings: dict[str, Any] = {}
    traits = workload.traits()
    for knob in registry.knobs.values():
        if exclusion(knob, hardware, traits) is None:
            settings.update(knob.baseline(hardware))
    for key, value in workload.baseline.items():
        if key in index and exclusion(index[key][0], hardware, traits) is None:
            settings[key] = index[key][1].coerce(value)
    return settings


def _drop_inactive(settings: dict[str, Any], index: dict[str, tuple[Knob, Param]]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in index or index[k][1].active(settings)}


def resolve_settings(
    registry: "Registry",
    hardware: "Hardware",
    workload: "Workload",
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """Baseline settings with `overrides` applied and validated.

    Raises UsageError for an unknown setting, a value of the wrong type or out of range, a knob
    that does not apply on this hardware, or a conditional setting whose condition is not met.
    """
    index = settings_index(registry, hardware)
    settings = _every_baseline(registry, hardware, workload)
    traits = workload.traits()
    for key, value in overrides.items():
        if key not in index:
            if key in registry.disabled:
                raise UsageError(f"setting '{key}': knob is off ({registry.disabled[key]})")
            raise UsageError(f"unknown setting '{key}' (known: {', '.join(sorted(index))})")
        knob, param = index[key]
        coerced = param.coerce(value)
        reason = exclusion(knob, hardware, traits)
        if reason is not None:
            if coerced == knob.baseline(hardware).get(key):
                continue  # asking for the untuned value of an absent knob is harmless
            raise UsageError(f"knob '{knob.name}' does not apply here: {reason}")
        settings[key] = coerced
    for key in overrides:
        if key in settings and not index[key][1].active(settings):
            when = index[key][1].when or {}
            cond = "; ".join(f"{k} is {' or '.join(map(str, v))}" for k, v in when.items())
            raise UsageError(f"setting '{key}' applies only when {cond}")
    return _drop_inactive(settings, index)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`--set key=value` strings -> dict (values stay strings; params coerce them)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set batch_size=128")
        result[key.strip()] = value.strip()
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON config: either {"settings": {...}, "workload": ...} or a flat dict.

    Returns {"settings": dict, "workload": str | None, "run": dict}; `run` (from `study export`)
    says how the study ran it: epochs / steps / seconds, target, evals_per_epoch.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"config {path}: cannot read: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomlfile.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"config {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except tomlfile.TOMLDecodeError as exc:
        raise UsageError(f"config {path}: invalid TOML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config {path}: expected a table of settings")
    settings = data.get("settings", {k: v for k, v in data.items() if k not in _CONFIG_META})
    if not isinstance(settings, dict):
        raise UsageError(f"config {path}: 'settings' must be a table")
    workload = data.get("workload")
    run = data.get("run", {})
    if not isinstance(run, dict):
        raise UsageError(f"config {path}: 'run' must be a table")
    return {"settings": dict(settings), "workload": workload, "run": dict(run)}


_CONFIG_META = {"workload", "study", "trial", "metrics", "objective", "value", "autotune", "run"}
