"""The `autotune` command: a thin click front end. Commands live in autotune/commands/."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import click

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
        except KeyboardInterrupt:
            # click would print "Aborted!" and exit 1; an interruption is 130, as in a shell
            click.echo("autotune: interrupted", err=True)
            ctx.exit(130)
        except ImportError as exc:
            # A dependency that will not load (torch under a memory limit, a broken install) is
            # this machine's problem, not a bug: one line, exit 1.
            if ctx.find_root().params.get("debug"):
                raise
            module = _failed_package(exc)
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"autotune: error: cannot import {module}: {reason} (see --debug)", err=True)
            ctx.exit(1)
        except Exception as exc:
            # Readers name the damaged file themselves (autotune.storage.damage); this is the net
            # under a read that escaped them (an Optuna storage's lazy query): one line, not a
            # traceback of SQLAlchemy.
            from autotune.storage.damage import is_damage

            # (a JSON or text ValueError could come from any file: only SQLite's verdicts count)
            if ctx.find_root().params.get("debug") or isinstance(exc, ValueError) or not is_damage(exc):
                raise
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            click.echo(f"autotune: error: a database autotune read is damaged ({reason}); "
                       f"--debug shows which", err=True)
            ctx.exit(1)


@click.group(cls=AutotuneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="autotune", prog_name="autotune")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
def cli(debug: bool) -> None:
    """Find how to train a PyTorch model fastest without losing accuracy.

    \b
    Quick start:
      autotune study start --name demo --space quick --n-trials 12
      autotune trial run --workload digits --set batch_size=128 --set precision=bf16
      autotune plugins          # the knobs you can tune
      autotune space show quick # what a search space resolves to here

    \b
    Exit codes:
      0    success
      1    a run or a study failed (a study in which no trial completed, too)
      2    usage error: bad option, unknown name, malformed file
      130  interrupted (Ctrl-C, SIGTERM); the study resumes where it stopped
    """
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )
    if not debug:
        logging.getLogger("optuna").setLevel(logging.WARNING)


def _failed_package(exc: ImportError) -> str:
    """The top-level package whose import failed (torch, not its private `_C`): the deepest frame
    of the traceback that lies in an import folder, autotune's own aside."""
    roots = sorted((os.path.abspath(p) for p in sys.path if p), key=len, reverse=True)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = os.path.abspath(frame.filename)
        root = next((r for r in roots if path.startswith(r + os.sep)), None)
        if root is None:
            continue
        top = os.path.relpath(path, root).split(os.sep)[0].removesuffix(".py")
        if top != "autotune":
            return top
    return exc.name or "a module"


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
