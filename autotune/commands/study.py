"""`autotune study ...`: start, watch, inspect and export studies."""

from __future__ import annotations

import sys
from typing import Any

import click

from autotune.commands.options import echo_json, json_option, registry_options
from autotune.commands.trial import budget_options


@click.group()
def study() -> None:
    """Run and inspect tuning studies."""


def _store() -> Any:
    from autotune.store import Store

    return Store()


@study.command("start")
@click.option("--name", required=True, help="Study name; an existing name resumes that study.")
@click.option("--workload", "-w", default="digits", show_default=True, metavar="NAME|MODULE:FUNC",
              help="What to train: a registered workload or an import path.")
@click.option("--space", default=None, metavar="NAME|PATH",
              help="Search space: bundled name (default, cpu, gpu, quick) or a TOML file. Default: cpu or gpu by hardware.")
@click.option("--objective", default="time-to-accuracy", show_default=True, metavar="NAME",
              help="time-to-accuracy, throughput, accuracy or pareto.")
@click.option("--n-trials", type=int, default=20, show_default=True, help="Trials to finish, the baseline included.")
@click.option("--timeout", type=float, default=None, help="Stop starting trials after this many seconds.")
@budget_options
@click.option("--target", type=float, default=None,
              help="Target validation accuracy (0..1). Default: the baseline's final accuracy minus 0.5 points.")
@click.option("--storage", default=None, metavar="URL",
              help="Optuna storage URL. Default: sqlite:///$AUTOTUNE_HOME/studies.db")
@click.option("--seed", type=int, default=None, help="Make the sequence of proposed configurations repeat.")
@click.option("--pruner", default="median", show_default=True, type=click.Choice(["median", "hyperband", "none"]),
              help="How hopeless trials are stopped early.")
@click.option("--confirm", type=int, default=3, show_default=True,
              help="Re-runs of best and baseline at the end, to confirm the speedup.")
@click.option("--device", default=None, help="cuda, mps or cpu (default: best available).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where cifar10/mnist data lives.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trials run at once. Default: 1; on CUDA, one trial per group of --gpus-per-trial GPUs.")
@click.option("--gpus-per-trial", type=click.IntRange(min=1), default=None, metavar="K",
              help="GPUs each trial gets (default 1); 2+ lets the data_parallel knob search DDP.")
@click.option("--no-tui", is_flag=True, help="Print one line per finished trial instead of opening the terminal UI.")
@click.option("--detach", is_flag=True, help="Hand the study to the background daemon and return at once.")
@json_option
@registry_options
def start(**kwargs: Any) -> None:
    """Start (or resume) a study and report the best configuration against the baseline.

    Trial 0 is always the workload's baseline recipe. The default objective minimizes training
    time to the baseline's accuracy (minus 0.5 points); at the end the best and the baseline are
    re-run side by side and the confirmed speedup is reported as median (min-max).
    """
    from autotune.spec import StudySpec

    budget = {k: v for k, v in (("epochs", kwargs["budget_epochs"]), ("steps", kwargs["budget_steps"]),
                                ("seconds", kwargs["budget_seconds"])) if v is not None} or {"epochs": 5}
    spec = StudySpec(
        name=kwargs["name"], workload=kwargs["workload"], space=kwargs["space"],
        objective=kwargs["objective"], n_trials=kwargs["n_trials"], timeout=kwargs["timeout"],
        budget=budget, target=kwargs["target"], storage=kwargs["storage"], seed=kwargs["seed"],
        pruner=kwargs["pruner"], confirm=kwargs["confirm"], device=kwargs["device"],
        data_dir=kwargs["data_dir"], plugin_paths=tuple(kwargs["plugin_paths"]),
        disabled_knobs=tuple(kwargs["disabled_knobs"]), workers=kwargs["workers"] or 1,
    )
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
        from autotune.commands.daemon_client import submit

        submit(spec, as_json=kwargs["as_json"])
        return
    _run_foreground(spec, as_json=kwargs["as_json"], tui=tui, workers=kwargs["workers"],
                    gpus_per_trial=gpus_per_trial)


def _run_foreground(
    spec: Any, as_json: bool, tui: bool, workers: int | None = None, gpus_per_trial: int | None = None
) -> None:
    from autotune.commands.study_output import LineReporter, print_report
    from autotune.devices import trial_pool_for
    from autotune.study import StudyRunner, install_signal_handlers, prepare

    fitted: dict[str, Any] = {}

    def fit_trials_to(hardware: Any) -> None:
        fitted["pool"], fitted["workers"] = trial_pool_for(hardware, workers, gpus_per_trial)

    prepared = prepare(spec, check_hardware=fit_trials_to)  # validates everything before anything is written
    store = _store()
    if tui:
        try:
            from autotune.commands.daemon_client import submit
        except ImportError:
            pass
        else:
            submit(spec, as_json=False, quiet=True)
            from autotune.commands.tui import open_tui

            open_tui(spec.name)
            return
    spec.workers = fitted["workers"]  # not before: a study handed to the daemon keeps the asked count
    reporter = LineReporter(quiet=as_json)
    runner = StudyRunner(prepared, store, reporter=reporter, devices=fitted["pool"])
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


def _open(name: str, storage: str | None) -> tuple[Any, Any]:
    from autotune.results import open_study

    store = _store()
    row = store.get_study(name)
    url = storage or (row["storage"] if row else None)
    if url is None:
        from autotune.study import default_storage_url

        url = default_storage_url()
    return open_study(url, name), row


storage_option = click.option("--storage", default=None, metavar="URL",
                              help="Optuna storage URL (default: where the study was started, or the default).")


@study.command("list")
@storage_option
@json_option
def list_cmd(storage: str | None, as_json: bool) -> None:
    """List studies with their state and progress."""
    import optuna

    from autotune.study import counted_trials, default_storage_url, open_storage

    store = _store()
    rows = {r["name"]: r for r in store.list_studies()}
    urls = {storage or default_storage_url()} | ({r["storage"] for r in rows.values()} if not storage else set())
    out = []
    for url in sorted(urls):
        try:
            storage_obj = open_storage(url)
            summaries = optuna.get_all_study_summaries(storage_obj)
        except Exception:
            continue
        for s in summaries:
            row = rows.get(s.study_name, {})
            st = optuna.load_study(study_name=s.study_name, storage=storage_obj)
            best = None
            if len(s.directions) == 1:
                try:
                    best = st.best_value
                except ValueError:
                    best = None
            out.append({
                "name": s.study_name, "status": row.get("status", "unknown"),
                "done": counted_trials(st), "n_trials": row.get("n_trials") or s.user_attrs.get("autotune", {}).get("n_trials"),
                "objective": s.user_attrs.get("autotune", {}).get("objective"), "best": best,
                "workload": s.user_attrs.get("autotune", {}).get("workload"), "storage": url,
            })
    for name, row in rows.items():  # queued studies not yet in storage
        if not any(o["name"] == name for o in out):
            out.append({"name": name, "status": row["status"], "done": 0, "n_trials": row["n_trials"],
                        "objective": row["objective"], "best": None, "workload": row["workload"],
                        "storage": row["storage"]})
    if as_json:
        echo_json(out)
        return
    if not out:
        click.echo("no studies yet: autotune study start --name demo --space quick --n-trials 12")
        return
    click.echo(f"{'NAME':<20} {'STATUS':<10} {'TRIALS':>9} {'OBJECTIVE':<17} {'BEST':>10}  WORKLOAD")
    for o in out:
        best = f"{o['best']:.4g}" if isinstance(o["best"], (int, float)) else "-"
        click.echo(f"{o['name']:<20} {o['status']:<10} {o['done']:>4}/{o['n_trials'] or '?':<4} "
                   f"{o['objective'] or '-':<17} {best:>10}  {o['workload'] or '-'}")


@study.command("show")
@click.argument("name")
@storage_option
@json_option
def show(name: str, storage: str | None, as_json: bool) -> None:
    """Show a study: trials, best, Pareto front and parameter importances."""
    from autotune.commands.study_output import print_show
    from autotune.results import importances, pareto_front, summary, trial_rows

    st, row = _open(name, storage)
    rows = trial_rows(st)
    data = {
        "summary": summary(st, row),
        "trials": [r.to_dict() if hasattr(r, "to_dict") else vars(r) for r in rows],
        "importances": importances(st),
        "confirmation": st.user_attrs.get("confirmation"),
    }
    if len(st.directions) > 1:
        data["pareto_front"] = [r.number for r in pareto_front(st)]
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
    from autotune.study import TRIAL_METRICS

    st, _ = _open(name, storage)
    trials = st.best_trials if len(st.directions) > 1 else []
    if len(st.directions) == 1:
        try:
            trials = [st.best_trial]
        except ValueError:
            raise UsageError(f"study '{name}' has no completed trial yet") from None
    out = [{
        "number": t.number, "values": t.values, "settings": t.user_attrs.get("settings", {}),
        "metrics": {k: t.user_attrs.get(k) for k in TRIAL_METRICS if t.user_attrs.get(k) is not None},
    } for t in trials]
    if as_json:
        echo_json(out[0] if len(out) == 1 else out)
        return
    for o in out:
        click.echo(f"trial {o['number']}: {', '.join(f'{v:.4g}' for v in o['values'])}")
        for k, v in o["settings"].items():
            click.echo(f"  {k} = {v}")


@study.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml", show_default=True)
@click.option("--trial", "trial_number", type=int, default=None, help="Export this trial instead of the best.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
@storage_option
def export(name: str, fmt: str, trial_number: int | None, output: str | None, storage: str | None) -> None:
    """Export the best configuration; `autotune trial run --config FILE` accepts it."""
    from autotune.export import export_config

    st, _ = _open(name, storage)
    trial = None
    if trial_number is not None:
        from autotune.errors import UsageError

        matches = [t for t in st.get_trials(deepcopy=False) if t.number == trial_number]
        if not matches:
            raise UsageError(f"study '{name}' has no trial {trial_number}")
        trial = matches[0]
    text = export_config(st, trial=trial, fmt=fmt)
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
    from autotune.study import default_storage_url, open_storage

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


def _set_state(name: str, status: str, allowed: tuple[str, ...], verb: str) -> None:
    from autotune.errors import UsageError

    store = _store()
    row = store.get_study(name)
    if row is None:
        raise UsageError(f"no study '{name}' (see autotune study list)")
    if row["status"] not in allowed:
        raise UsageError(f"cannot {verb} study '{name}': it is {row['status']}")
    store.set_study_status(name, status)
    store.add_event(name, f"study_{status}", f"study {status} by the user")
    click.echo(f"{name}: {status}")


@study.command("pause")
@click.argument("name")
def pause(name: str) -> None:
    """Pause a study: the running trial finishes, no new trial starts."""
    _set_state(name, "paused", ("running", "queued"), "pause")


@study.command("resume")
@click.argument("name")
def resume(name: str) -> None:
    """Resume a paused study."""
    _set_state(name, "running", ("paused",), "resume")


@study.command("stop")
@click.argument("name")
@click.option("--kill", is_flag=True, help="Also kill the running trial now (recorded as stopped by the user).")
def stop(name: str, kill: bool) -> None:
    """Stop a study after its running trial (or at once with --kill)."""
    _set_state(name, "stopping", ("running", "paused", "queued"), "stop")
    if kill:
        _store().request_kill(name)


def register(cli: click.Group) -> None:
    cli.add_command(study)
