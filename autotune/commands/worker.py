"""`autotune worker`: run trials of an existing study from this machine (see docs/distributed.md)."""

from __future__ import annotations

from typing import Any

import click

from autotune.commands.options import echo_json, json_option


@click.command("worker")
@click.option("--storage", required=True, metavar="URL",
              help="The study's shared Optuna storage, e.g. postgresql://user:pass@host/db.")
@click.option("--study", "study_name", required=True, metavar="NAME",
              help="An existing study (create it with `autotune study start --storage URL`).")
@click.option("--workers", type=int, default=None,
              help="Trials run at once here. Default: 1; on CUDA, one trial per group of --gpus-per-trial GPUs.")
@click.option("--gpus-per-trial", type=int, default=None, metavar="K",
              help="GPUs each trial gets (CUDA_VISIBLE_DEVICES). Default: 1.")
@click.option("--device", default=None, help="cuda, mps or cpu (default: best available here).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where this machine keeps cifar10/mnist data (default: the study's).")
@click.option("--plugin", "plugin_paths", multiple=True, metavar="PATH", type=click.Path(dir_okay=False),
              help="Plugin file, where it lives on this machine (repeatable; replaces the study's paths).")
@json_option
def worker(storage: str, study_name: str, workers: int | None, gpus_per_trial: int | None,
           device: str | None, data_dir: str | None, plugin_paths: tuple[str, ...], as_json: bool) -> None:
    """Run trials of an existing study until it has its trial count.

    Any number of workers, on any number of machines, can share a study in a PostgreSQL
    storage; together they finish exactly the study's --n-trials. Each trial runs isolated in
    its own process, with heartbeats: a trial whose worker dies is retried by another worker.
    The final confirmation is left to `autotune study start`.

    \b
      autotune worker --storage postgresql://tuner:secret@db-host/autotune --study resnet
    """
    from autotune.commands.study_output import LineReporter
    from autotune.errors import UsageError
    from autotune.study.runner import install_signal_handlers
    from autotune.study.worker import run_worker

    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    install_signal_handlers()
    try:
        report = run_worker(
            storage, study_name, workers=workers, gpus_per_trial=gpus_per_trial, device=device,
            data_dir=data_dir, plugin_paths=plugin_paths, listeners=(LineReporter(quiet=as_json),),
        )
    except KeyboardInterrupt:
        click.echo(f"autotune: interrupted: worker left study '{study_name}'; its running trial was "
                   f"recorded and will run again", err=True)
        raise SystemExit(130)
    if as_json:
        echo_json(report)
    c = report["counts"]
    if not as_json:
        click.echo(f"study {study_name}: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed "
                   f"(all workers); best: {_best(report)}")
    from autotune.commands.study_start import fail_if_nothing_completed

    fail_if_nothing_completed(study_name, report)


def _best(report: dict[str, Any]) -> str:
    best = report.get("best")
    if not best:
        return "-"
    from autotune.formatting import plain
    from autotune.objectives import objective_value

    value = best["value"]
    shown = objective_value(report.get("objective"), value) if isinstance(value, float) else plain(value)
    return f"trial {best['number']} = {shown}"


def register(cli: click.Group) -> None:
    cli.add_command(worker)
