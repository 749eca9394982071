"""The `autotune` command: a thin click front end. Commands live in autotune/commands/."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from autotune import __version__
from autotune.errors import AutotuneError


class AutotuneGroup(click.Group):
    """Turns AutotuneError into one line on stderr and its exit code; --debug keeps tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AutotuneError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"autotune: error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=AutotuneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autotune")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
def cli(debug: bool) -> None:
    """Find how to train a PyTorch model fastest without losing accuracy.

    \b
    Quick start:
      autotune study start --name demo --space quick --n-trials 12
      autotune trial run --workload digits --set batch_size=128 --set precision=bf16
      autotune plugins          # the knobs you can tune
      autotune space show quick # what a search space resolves to here
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    if not debug:
        logging.getLogger("optuna").setLevel(logging.WARNING)


def _add_commands() -> None:
    from autotune.commands import hardware, plugins, space, trial

    for module in (hardware, plugins, space, trial):
        module.register(cli)
    for optional in ("study", "daemon", "tui", "logs", "worker"):
        try:
            module = __import__(f"autotune.commands.{optional}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"autotune.commands.{optional}":
                raise
            continue
        module.register(cli)


_add_commands()


def main() -> None:
    cli(prog_name="autotune")


if __name__ == "__main__":
    sys.exit(main())
