"""Options shared by several commands."""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from autotune.registry import Registry, load_registry


def registry_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--plugin PATH and --disable-knob NAME, for every command that loads knobs."""
    fn = click.option(
        "--disable-knob", "disabled_knobs", multiple=True, metavar="NAME",
        help="Leave this knob out entirely (repeatable).",
    )(fn)
    fn = click.option(
        "--plugin", "plugin_paths", multiple=True, metavar="PATH",
        type=click.Path(dir_okay=False),
        help="Load a plugin file (repeatable). Also: AUTOTUNE_PLUGINS_DIR.",
    )(fn)
    return fn


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def get_registry(plugin_paths: tuple[str, ...], disabled_knobs: tuple[str, ...]) -> Registry:
    return load_registry(plugin_paths=plugin_paths, disabled_knobs=disabled_knobs)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def target_fields(text: str | None) -> dict[str, Any]:
    """--target as a StudySpec stores it: its value, and the metric and direction it names."""
    from autotune.metrics import Target

    if text is None:
        return {"target": None}
    target = Target.parse(text)
    return {"target": target.value, "target_metric": target.metric, "target_direction": target.direction}
