"""`autotune plugins`: what is loaded, from where, and which knobs and workloads it brings."""

from __future__ import annotations

from typing import Any

import click

from autotune.commands.options import echo_json, json_option, registry_options

from autotune.tasks import DEFAULT_TASK, TASKS

ALL = "all"
TASK_CHOICES = (*TASKS, ALL)


def task_option(fn: Any) -> Any:
    return click.option(
        "--task", type=click.Choice(TASK_CHOICES), default=DEFAULT_TASK, show_default=True,
        help="Whose knobs: training runs', inference (serving a trained model), or all.",
    )(fn)


@click.command()
@json_option
@task_option
@registry_options
def plugins(as_json: bool, task: str, plugin_paths: tuple[str, ...], disabled_knobs: tuple[str, ...]) -> None:
    """List loaded plugins, their source (built-in, entry point, file) and their knobs.

    With --task inference or all, each knob also says why it does not apply on this machine
    (`unavailable`: TensorRT without CUDA, a library that is not installed); that checks the
    machine, which imports torch.
    """
    from autotune.registry import load_registry

    registry = load_registry(plugin_paths=plugin_paths, disabled_knobs=disabled_knobs,
                             task=None if task == ALL else task)
    hardware = None
    default_listing = task == DEFAULT_TASK
    if not default_listing:  # the default listing stays torch-free (it is what most people ask for)
        from autotune.hardware import detect

        hardware = detect()
    rows = []
    for info in registry.plugins:
        row = info.to_dict()
        row["knobs"] = [_knob_entry(registry, name, hardware) for name in info.knobs
                        if name in registry.knobs or name in registry.disabled]
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        if not default_listing and not row["knobs"] and not row["workloads"]:
            continue
        where = row["path"] or row["module"]
        version = f" {row['version']}" if row["version"] else ""
        click.echo(f"{row['name']}{version}  [{row['source']}]  {where}")
        for knob in row["knobs"]:
            if knob.get("disabled"):
                click.echo(f"    knob {knob['name']:<16} (off: {knob['disabled']})")
                continue
            shown = f"[{knob['task']}] " if task == ALL else ""
            off = f"  (unavailable: {knob['unavailable']})" if knob.get("unavailable") else ""
            click.echo(f"    knob {knob['name']:<16} {knob['kind']:<12} {shown}{knob['help']}{off}")
        for name in row["workloads"]:
            click.echo(f"    workload {name}")
    if default_listing:
        click.echo("(the knobs that tune serving a trained model: autotune plugins --task inference)")


def _knob_entry(registry: Any, name: str, hardware: Any) -> dict[str, Any]:
    if name not in registry.knobs:
        return {"name": name, "disabled": registry.disabled.get(name)}
    knob = registry.knobs[name]
    entry = {"name": name, "kind": knob.kind, "task": knob.task, "help": knob.help}
    if hardware is not None:
        entry["unavailable"] = knob.unavailable(hardware)
    return entry


def register(cli: click.Group) -> None:
    cli.add_command(plugins)
