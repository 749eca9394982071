"""`autotune space show`: what a search space resolves to on this hardware."""

from __future__ import annotations

import os

import click

from autotune.commands.options import echo_json, json_option, registry_options
from autotune.errors import UsageError
from autotune.knob import TASKS


@click.group()
def space() -> None:
    """Inspect search spaces (search_spaces/*.toml or your own file)."""


@space.command("show")
@click.argument("name", required=False, default=None)
@json_option
@click.option("--device", default=None, help="Resolve for this device type (default: best available).")
@click.option("--workload", "-w", default=None, metavar="NAME|MODULE:FUNC",
              help="Resolve for this workload too: knobs that do nothing for it are left out, with why.")
@click.option("--script", default=None, type=click.Path(dir_okay=False, exists=True), metavar="PATH",
              help="Resolve for a study of your own training script (study start --script): knobs that need "
                   "autotune's own loop are left out, with why.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where cifar10/mnist data lives.")
@click.option("--task", type=click.Choice(TASKS), default="training", show_default=True,
              help="The space of a training study, or of an inference study (serving a trained model).")
@registry_options
def show(name: str | None, as_json: bool, device: str | None, workload: str | None, script: str | None,
         data_dir: str | None, task: str, plugin_paths: tuple[str, ...], disabled_knobs: tuple[str, ...]) -> None:
    """Show the resolved search space NAME (a bundled name or a TOML path; default: default, or with
    --script the one `study start --script` searches on this device)."""
    from autotune.commands.trial import resolve_device
    from autotune.registry import load_registry
    from autotune.space import load_space

    registry = load_registry(plugin_paths=plugin_paths, disabled_knobs=disabled_knobs, task=task)
    hardware = resolve_device(device)
    traits = None
    if workload is not None and script is not None:
        raise UsageError("--workload and --script: a study trains one or the other")
    if script is not None:  # the model is the script's, built in its trials: as study start --script sees it
        from autotune.workloads import script_workload

        traits = script_workload(f"script:{os.path.abspath(script)}").traits()
        if name is None:
            from autotune.tasks import get_task

            name = get_task(task).default_space(hardware.device_type)
    elif workload is not None:
        from autotune.workloads import load_workload

        traits = load_workload(workload, registry, data_dir=data_dir).traits()
    resolved = load_space(name or "default", registry, hardware, traits)
    if as_json:
        echo_json(resolved.to_dict())
    else:
        click.echo(resolved.describe())


def register(cli: click.Group) -> None:
    cli.add_command(space)
