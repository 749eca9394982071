"""`autotune study start`: validate a study, then run it here, in the daemon, or under the UI."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from autotune.commands.options import echo_json, json_option, registry_options, target_fields
from autotune.commands.trial import budget_options
from autotune.tasks import get_task


def _store() -> Any:
    from autotune.storage.local import Store

    return Store()


@click.command("start")
@click.option("--name", required=True, help="Study name; an existing name resumes that study.")
@click.option("--workload", "-w", default=None, metavar="NAME|MODULE:FUNC",
              help="What to train: a registered workload or an import path. Default: digits (for --task "
                   "inference: the model's).")
@click.option("--task", type=click.Choice(["training", "inference"]), default="training", show_default=True,
              help="Tune training runs, or serving a trained model (--checkpoint or --from-study).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="--task inference: serve the model `autotune trial run --save-model FILE` wrote.")
@click.option("--trust-pickle", is_flag=True,
              help="--checkpoint: read a model file of autotune's first format, which holds pickled objects that "
                   "run code when read (only for a file you trust); the study serves a copy without pickle.")
@click.option("--from-study", default=None, metavar="NAME",
              help="--task inference: serve the best configuration of finished training study NAME, trained once "
                   "more with its model saved into this study's folder.")
@click.option("--max-drop", type=float, default=0.01, show_default=True, metavar="FRACTION",
              help="--task inference: the accuracy guard, the largest relative drop of the metric against the "
                   "unoptimized model's; trials beyond it are infeasible.")
@click.option("--iterations", type=click.IntRange(min=1), default=30, show_default=True,
              help="--task inference: timed calls for each latency and throughput (after warm-up).")
@click.option("--space", default=None, metavar="NAME|PATH",
              help="Search space: bundled name (default, cpu, gpu, quick, demo) or a TOML file. Default: cpu or gpu by hardware.")
@click.option("--objective", default=None, metavar="NAME",
              help="time-to-accuracy (the default), throughput, accuracy or pareto; latency (the only one, and "
                   "the default) for --task inference.")
@click.option("--keep-recipe", is_flag=True,
              help="Search only systems knobs (Knob.kind 'systems': workers, threads, precision, compile ...): the "
                   "training recipe stays the baseline's, and the report checks the best's validation curve against "
                   "the baseline's within the run-to-run noise.")
@click.option("--enqueue", "enqueue", multiple=True, metavar="KEY=VALUE[,KEY=VALUE]",
              help="Also run this trial right after the baseline: the baseline with these searched settings "
              "changed (repeatable), e.g. --enqueue 'int8_dynamic=true'.")
@click.option("--n-trials", type=int, default=20, show_default=True, help="Trials to finish, the baseline included.")
@click.option("--timeout", type=float, default=None, help="Stop starting trials after this many seconds.")
@budget_options
@click.option("--run-epochs", type=float, default=None, metavar="EPOCHS",
              help="How long your real training runs: the answer is checked at this length (it must reach "
                   "the baseline's value there sooner), and with --budget-epochs time to target is projected "
                   "for it. Default: 10x the budget.")
@click.option("--run-steps", type=int, default=None, metavar="STEPS",
              help="Your real run's length in steps, instead of --run-epochs.")
@click.option("--one-stage", is_flag=True,
              help="Search systems and statistical knobs together in one search, instead of the statistical "
                   "ones first and the systems ones fitted to the best recipe by paired step time.")
@click.option("--target", default=None, metavar="VALUE|NAME<=VALUE",
              help="Target of the workload's metric (accuracy 0..1, or val_loss<=1.9 style). Default: the "
                   "baseline's final value, less 0.5 points of accuracy (or 1% of any other metric).")
@click.option("--script", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Tune your own training script (autotune.session API) instead of a workload; "
                   "arguments after -- go to it.")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option("--metric", default=None, metavar="NAME[:min|max]",
              help="Judge trials by this validation metric instead of the workload's (a --script's report).")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage URL. Default: sqlite:///$AUTOTUNE_HOME/studies.db")
@click.option("--seed", type=int, default=None, help="Make the sequence of proposed configurations repeat.")
@click.option("--pruner", default="median", show_default=True, type=click.Choice(["median", "hyperband", "none"]),
              help="How hopeless trials of the accuracy objective are stopped early (time-to-accuracy prunes "
                   "a trial once it is slower than the best by more than the noise).")
@click.option("--confirm", type=int, default=3, show_default=True,
              help="Re-runs of best and baseline at the end, to confirm the speedup.")
@click.option("--explain/--no-explain", default=True, show_default=True,
              help="After a confirmed speedup, measure why: the path from the baseline to the best, one knob "
                   "at a time (one run per step).")
@click.option("--device", default=None, help="cuda, mps or cpu (default: best available).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where cifar10/mnist data lives.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trials run at once. Default: 1; on CUDA, one trial per group of --gpus-per-trial GPUs.")
@click.option("--gpus-per-trial", type=click.IntRange(min=1), default=None, metavar="K",
              help="GPUs each trial gets (default 1); 2+ lets the data_parallel knob search DDP.")
@click.option("--stall-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Kill a trial that makes no progress for this long (or 10x its median step time); 0: never.")
@click.option("--no-tui", is_flag=True, help="Print one line per finished trial instead of opening the terminal UI.")
@click.option("--detach", is_flag=True, help="Hand the study to the background daemon and return at once.")
@json_option
@registry_options
def start(**kwargs: Any) -> None:
    """Start (or resume) a study and report the best configuration against the baseline.

    Trial 0 is always the workload's baseline recipe. The default objective minimizes the
    projected training time to the baseline's value of the metric (less its noise): steps x the
    steady step time + one-time costs. At the end the best and the baseline are re-run side by
    side with fresh seeds, and the speedup is confirmed when its interval stays above 1.
    """
    from autotune.spec import StudySpec

    budget = {k: v for k, v in (("epochs", kwargs["budget_epochs"]), ("steps", kwargs["budget_steps"]),
                                ("seconds", kwargs["budget_seconds"])) if v is not None} or {"epochs": 5}
    script, script_args = kwargs["script"], tuple(kwargs["script_args"])
    if script_args and script is None:
        from autotune.errors import UsageError

        raise UsageError(f"unexpected arguments {' '.join(script_args)!r} (arguments after -- go to a --script)")
    inference = get_task(kwargs["task"]).serves_model
    if kwargs["checkpoint"] and kwargs["from_study"]:
        from autotune.errors import UsageError

        raise UsageError("--checkpoint and --from-study both name the model to serve: give one")
    workload = kwargs["workload"] or (None if inference else "digits")
    spec = StudySpec(
        name=kwargs["name"], workload=f"script:{script}" if script else workload, space=kwargs["space"],
        script=os.path.abspath(script) if script else None, script_args=script_args,
        task=kwargs["task"], max_drop=kwargs["max_drop"], iterations=kwargs["iterations"],
        checkpoint=os.path.abspath(kwargs["checkpoint"]) if kwargs["checkpoint"] else None,
        from_study=kwargs["from_study"],
        objective=kwargs["objective"] or ("latency" if inference else "time-to-accuracy"),
        n_trials=kwargs["n_trials"], timeout=kwargs["timeout"],
        budget=budget, run_epochs=kwargs["run_epochs"], run_steps=kwargs["run_steps"], staged=not kwargs["one_stage"], **target_fields(kwargs["target"]), metric=kwargs["metric"], storage=kwargs["storage"], seed=kwargs["seed"],
        pruner=kwargs["pruner"], confirm=kwargs["confirm"], explain=kwargs["explain"], device=kwargs["device"],
        data_dir=kwargs["data_dir"], plugin_paths=tuple(kwargs["plugin_paths"]),
        disabled_knobs=tuple(kwargs["disabled_knobs"]), workers=kwargs["workers"] or 1,
        workdir=os.getcwd(), stall_timeout=kwargs["stall_timeout"], enqueue=tuple(kwargs["enqueue"]),
        keep_recipe=kwargs["keep_recipe"],
    )
    spec.validate()  # before torch is imported: bad input answers at once
    if kwargs["trust_pickle"]:
        from autotune.study.checkpoint import trust_checkpoint

        trust_checkpoint(spec)
    gpus_per_trial = kwargs["gpus_per_trial"]
    # in a terminal, a study without --no-tui goes to the daemon and the UI opens on it
    tui = not kwargs["no_tui"] and not kwargs["as_json"] and sys.stdout.isatty()
    if gpus_per_trial is not None and (kwargs["detach"] or tui):
        from autotune.errors import UsageError

        raise UsageError(
            f"--gpus-per-trial {gpus_per_trial}: the daemon hands out GPUs to all its studies; start it "
            f"with `autotune daemon start --gpus-per-trial {gpus_per_trial}`, or run here with --no-tui"
        )
    if kwargs["detach"]:
        from autotune.daemon.client import submit

        submit(spec, as_json=kwargs["as_json"])
        return
    _run_foreground(spec, as_json=kwargs["as_json"], tui=tui, workers=kwargs["workers"],
                    gpus_per_trial=gpus_per_trial)


def _run_foreground(
    spec: Any, as_json: bool, tui: bool, workers: int | None = None, gpus_per_trial: int | None = None
) -> None:
    from autotune.commands.study_output import LineReporter, print_report
    from autotune.devices import trial_pool_for
    from autotune.study.prepare import prepare
    from autotune.study.runner import StudyRunner, install_signal_handlers

    fitted: dict[str, Any] = {}

    def fit_trials_to(hardware: Any) -> None:
        fitted["pool"], fitted["workers"] = trial_pool_for(hardware, workers, gpus_per_trial)

    prepared = prepare(spec, check_hardware=fit_trials_to)  # validates everything before anything is written
    store = _store()
    if tui:
        try:
            from autotune.daemon.client import submit
        except ImportError:
            pass
        else:
            submit(spec, as_json=False, quiet=True)
            from autotune.commands.tui import open_tui

            open_tui(spec.name)
            # q leaves a queued study queued: say so, or the user thinks it ran or was dropped
            note = still_queued_note(store, spec.name)
            if note is not None:
                click.echo(note, err=True)
            return
    spec.workers = fitted["workers"]  # not before: a study handed to the daemon keeps the asked count
    runner = StudyRunner(prepared, store, listeners=[LineReporter(quiet=as_json, objective=spec.objective)],
                         devices=fitted["pool"])
    install_signal_handlers()
    try:
        runner.open()
        report = runner.run()
    except KeyboardInterrupt:
        click.echo(
            f"autotune: interrupted: study '{spec.name}' stopped; the running trial was recorded and "
            f"will run again when you repeat the command", err=True,
        )
        raise SystemExit(130)
    if as_json:
        echo_json(report)
    elif get_task(spec.task).serves_model:
        from autotune.commands.inference_output import print_inference_report

        print_inference_report(report)
    else:
        print_report(report)
    fail_if_nothing_completed(spec.name, report)


def still_queued_note(store: Any, name: str) -> str | None:
    """The line `study start` prints when its UI closes on study `name` while the daemon has not
    started it: behind whom it waits, that the daemon will run it, and how to cancel or watch it.
    None when the Store no longer has it queued (it started, finished or was stopped)."""
    from autotune.daemon.queue import queue_place

    place = queue_place(store.list_studies(), name)
    if place is None:
        return None
    return (
        f"autotune: study '{name}' is still queued: {place.describe()}; the daemon will run it "
        f"(cancel it with `autotune study stop {name}`, watch it again with `autotune tui {name}`)"
    )


def fail_if_nothing_completed(name: str, report: dict[str, Any]) -> None:
    """A study in which no trial completed found nothing: it never exits 0."""
    counts = report["counts"]
    if counts["complete"] == 0:
        from autotune.errors import RunError

        raise RunError(
            f"study '{name}': no trial completed ({counts['pruned']} pruned, {counts['failed']} failed); "
            f"see why with `autotune study show {name}`"
        )
