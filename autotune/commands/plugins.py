"""`autotune plugins`: what is loaded, from where, and which knobs and workloads it brings."""

from __future__ import annotations

import click

from autotune.commands.options import echo_json, get_registry, json_option, registry_options


@click.command()
@json_option
@registry_options
def plugins(as_json: bool, plugin_paths: tuple[str, ...], disabled_knobs: tuple[str, ...]) -> None:
    """List loaded plugins, their source (built-in, entry point, file) and their knobs."""
    registry = get_registry(plugin_paths, disabled_knobs)
    rows = []
    for info in registry.plugins:
        row = info.to_dict()
        row["knobs"] = [
            {"name": k, "kind": registry.knobs[k].kind, "help": registry.knobs[k].help}
            if k in registry.knobs else {"name": k, "disabled": registry.disabled.get(k)}
            for k in info.knobs
        ]
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        where = row["path"] or row["module"]
        version = f" {row['version']}" if row["version"] else ""
        click.echo(f"{row['name']}{version}  [{row['source']}]  {where}")
        for knob in row["knobs"]:
            if knob.get("disabled"):
                click.echo(f"    knob {knob['name']:<16} (off: {knob['disabled']})")
            else:
                click.echo(f"    knob {knob['name']:<16} {knob['kind']:<12} {knob['help']}")
        for name in row["workloads"]:
            click.echo(f"    workload {name}")


def register(cli: click.Group) -> None:
    cli.add_command(plugins)
