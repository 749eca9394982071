"""`autotune study ...`: start, watch, inspect and export studies."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from autotune.commands.options import echo_json, json_option, registry_options, target_fields
from autotune.commands.trial import budget_options


@click.group()
def study() -> None:
    """Run and inspect tuning studies."""


def _store() -> Any:
    from autotune.storage.local import Store

    return Store()


@study.command("start")
@click.option("--name", required=True, help="Study name; an existing name resumes that study.")
@click.option("--workload", "-w", default="digits", show_default=True, metavar="NAME|MODULE:FUNC",
              help="What to train: a registered workload or an import path.")
@click.option("--space", default=None, metavar="NAME|PATH",
              help="Search space: bundled name (default, cpu, gpu, quick, demo) or a TOML file. Default: cpu or gpu by hardware.")
@click.option("--objective", default="time-to-accuracy", show_default=True, metavar="NAME",
              help="time-to-accuracy, throughput, accuracy or pareto.")
@click.option("--n-trials", type=int, default=20, show_default=True, help="Trials to finish, the baseline included.")
@click.option("--timeout", type=float, default=None, help="Stop starting trials after this many seconds.")
@budget_options
@click.option("--run-epochs", type=float, default=None, metavar="EPOCHS",
              help="How long your real training runs: time to target is projected for a run this long "
                   "(one-time costs weigh less in a long run). Needs --budget-epochs; default: the budget.")
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
    spec = StudySpec(
        name=kwargs["name"], workload=f"script:{script}" if script else kwargs["workload"], space=kwargs["space"],
        script=os.path.abspath(script) if script else None, script_args=script_args,
        objective=kwargs["objective"], n_trials=kwargs["n_trials"], timeout=kwargs["timeout"],
        budget=budget, run_epochs=kwargs["run_epochs"], **target_fields(kwargs["target"]), metric=kwargs["metric"], storage=kwargs["storage"], seed=kwargs["seed"],
        pruner=kwargs["pruner"], confirm=kwargs["confirm"], explain=kwargs["explain"], device=kwargs["device"],
        data_dir=kwargs["data_dir"], plugin_paths=tuple(kwargs["plugin_paths"]),
        disabled_knobs=tuple(kwargs["disabled_knobs"]), workers=kwargs["workers"] or 1,
        workdir=os.getcwd(), stall_timeout=kwargs["stall_timeout"],
    )
    spec.validate()  # before torch is imported: bad input answers at once
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


def _open(name: str, storage: str | None) -> tuple[Any, Any]:
    """The study to read (a fast SQLite view where possible) and its row in the local store."""
    from autotune.storage.rdb import default_storage_url
    from autotune.storage.reading import open_view

    row = _store().get_study(name)
    url = storage or (row["storage"] if row else None) or default_storage_url()
    return open_view(url, name), row


storage_option = click.option("--storage", default=None, metavar="URL",
                              help="Optuna storage URL (default: where the study was started, or the default).")


def study_lines(storage: str | None) -> list[dict[str, Any]]:
    """One line per study: what `study list` prints, from the same summary the UI shows."""
    from autotune.errors import UsageError
    from autotune.storage.rdb import default_storage_url, display_url
    from autotune.storage.reading import list_studies, open_view
    from autotune.storage.results import summary

    rows = {r["name"]: r for r in _store().list_studies()}
    urls = {storage or default_storage_url()} | ({r["storage"] for r in rows.values()} if not storage else set())
    out: list[dict[str, Any]] = []
    for url in sorted(urls):
        try:
            names = list_studies(url)
        except UsageError as exc:  # a storage that is unreachable: say so, list the others
            click.echo(f"autotune: warning: {exc}", err=True)
            continue
        for name in names:
            row = rows.get(name)
            if row is not None and row["storage"] != url and storage is None:
                continue  # a study of that name in another storage is the one the store means
            line = summary(open_view(url, name, with_params=False), row)
            out.append({
                "name": name, "status": line["state"] if row else "unknown", "done": line["done"],
                "n_trials": line["total"], "objective": line["objective"], "best": line["best_value"],
                "best_number": line["best_number"], "workload": line["workload"], "storage": display_url(url),
            })
    for name, row in rows.items():  # queued studies not yet in storage
        if not any(o["name"] == name for o in out):
            out.append({"name": name, "status": row["status"], "done": 0, "n_trials": row["n_trials"],
                        "objective": row["objective"], "best": None, "best_number": None,
                        "workload": row["workload"], "storage": display_url(row["storage"])})
    return out


@study.command("list")
@storage_option
@json_option
def list_cmd(storage: str | None, as_json: bool) -> None:
    """List studies with their state and progress."""
    out = study_lines(storage)
    if as_json:
        echo_json(out)
        return
    if not out:
        click.echo("no studies yet: autotune study start --name demo --space quick --n-trials 12")
        return
    from rich.console import Console
    from rich.table import Table

    from autotune.formatting import objective_value

    table = Table("NAME", "STATUS", "TRIALS", "OBJECTIVE", "BEST", "WORKLOAD", box=None, pad_edge=False)
    table.columns[2].justify = table.columns[4].justify = "right"
    for o in out:
        table.add_row(o["name"], o["status"], f"{o['done']}/{o['n_trials'] or '?'}", o["objective"] or "-",
                      objective_value(o["objective"], o["best"]) if isinstance(o["best"], (int, float)) else "-",
                      o["workload"] or "-")
    Console(highlight=False, soft_wrap=True).print(table)


@study.command("show")
@click.argument("name")
@storage_option
@json_option
def show(name: str, storage: str | None, as_json: bool) -> None:
    """Show a study: trials, best, Pareto front and parameter importances."""
    from autotune.commands.study_output import print_show
    from autotune.storage.reading import trial_rows
    from autotune.storage.results import importances, pareto_front, summary

    st, row = _open(name, storage)
    rows = trial_rows(st)
    data = {
        "summary": summary(st, row, rows),
        "trials": [r.to_dict() for r in rows],
        "importances": importances(st, rows),
        "confirmation": st.user_attrs.get("confirmation"),
    }
    if len(st.directions) > 1:
        data["pareto_front"] = [r.number for r in pareto_front(st, rows)]
    if as_json:
        echo_json(data)
    else:
        print_show(data)


@study.command("best")
@click.argument("name")
@storage_option
@json_option
def best(name: str, storage: str | None, as_json: bool) -> None:
    """Print the best configuration of a study (the Pareto front for pareto studies)."""
    from autotune.errors import UsageError
    from autotune.storage.reading import trial_rows
    from autotune.storage.results import best_row, pareto_front

    st, _ = _open(name, storage)
    rows = trial_rows(st)
    if len(st.directions) > 1:
        trials = pareto_front(st, rows)
    else:
        found = best_row(st, rows)
        trials = [found] if found is not None else []
    if not trials:
        raise UsageError(f"study '{name}' has no completed trial yet")
    out = [{"number": t.number, "values": t.values, "settings": t.settings, "metrics": t.metrics} for t in trials]
    if as_json:
        echo_json(out[0] if len(out) == 1 else out)
        return
    from autotune.formatting import objective_values

    objective = (st.user_attrs.get("autotune") or {}).get("objective")
    for o in out:
        click.echo(f"trial {o['number']}: {objective_values(objective, o['values'])}")
        for k, v in o["settings"].items():
            click.echo(f"  {k} = {v}")  # exact: this is what a user copies


@study.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml", show_default=True)
@click.option("--trial", "trial_number", type=int, default=None, help="Export this trial instead of the best.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
@storage_option
def export(name: str, fmt: str, trial_number: int | None, output: str | None, storage: str | None) -> None:
    """Export the best configuration; `autotune trial run --config FILE` accepts it."""
    from autotune.storage.export import export_config

    st, _ = _open(name, storage)
    text = export_config(st, trial=trial_number, fmt=fmt)
    if output:
        with open(output, "w") as f:
            f.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@study.command("delete")
@click.argument("name")
@storage_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, storage: str | None, yes: bool) -> None:
    """Delete a study from the storage and autotune's local state."""
    import optuna

    from autotune.errors import UsageError
    from autotune.storage.rdb import default_storage_url, open_storage

    store = _store()
    row = store.get_study(name)
    if row and row["status"] in ("running", "stopping"):
        raise UsageError(f"study '{name}' is {row['status']}; stop it first: autotune study stop {name}")
    url = storage or (row["storage"] if row else default_storage_url())
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete study '{name}' from {url}?", abort=True)
    try:
        optuna.delete_study(study_name=name, storage=open_storage(url))
    except KeyError:
        if row is None:
            raise UsageError(f"no study '{name}' in {url}") from None
    store.delete_study(name)
    click.echo(f"deleted {name}")


@study.command("pause")
@click.argument("name")
def pause(name: str) -> None:
    """Pause a study: the running trial finishes, no new trial starts."""
    from autotune import control

    click.echo(f"{name}: {control.pause(_store(), name)}")


@study.command("resume")
@click.argument("name")
def resume(name: str) -> None:
    """Resume a paused study."""
    from autotune import control

    click.echo(f"{name}: {control.resume(_store(), name)}")


@study.command("stop")
@click.argument("name")
@click.option("--kill", is_flag=True, help="Also kill the running trial now (recorded as stopped by the user).")
def stop(name: str, kill: bool) -> None:
    """Stop a study after its running trial (or at once with --kill)."""
    from autotune import control

    click.echo(f"{name}: {control.stop(_store(), name, kill=kill)}")


def register(cli: click.Group) -> None:
    cli.add_command(study)
