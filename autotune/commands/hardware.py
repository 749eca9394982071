"""`autotune hardware`: the fingerprint stored with every study."""

from __future__ import annotations

import click

from autotune.commands.options import echo_json, json_option


@click.command()
@json_option
@click.option("--device", type=click.Choice(["cuda", "mps", "cpu"]), help="Fingerprint this device type.")
def hardware(as_json: bool, device: str | None) -> None:
    """Show the device, CPU, memory, torch version and supported precisions."""
    from autotune.errors import UsageError
    from autotune.hardware import available_device_types, detect

    if device and device not in available_device_types():
        raise UsageError(f"--device {device}: not available here (available: {', '.join(available_device_types())})")
    hw = detect(device)
    if as_json:
        echo_json(hw.to_dict())
        return
    from autotune.formatting import nbytes

    click.echo(f"device      {hw.device_type} ({hw.device_name}) x{hw.device_count}")
    if hw.gpu_memory_bytes:
        click.echo(f"gpu memory  {nbytes(hw.gpu_memory_bytes)}")
    click.echo(f"cpu         {hw.cpu_name}, {hw.cpu_count} cores")
    click.echo(f"memory      {nbytes(hw.memory_bytes)}")
    click.echo(f"torch       {hw.torch_version}")
    click.echo(f"precisions  {', '.join(hw.precisions)}")
    for key, note in hw.notes.items():
        click.echo(f"note        {key}: {note}")


def register(cli: click.Group) -> None:
    cli.add_command(hardware)
