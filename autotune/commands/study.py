"""`autotune study ...`: start, watch, inspect and export studies."""

from __future__ import annotations

import sys
from typing import Any

import click

from autotune.commands.options import echo_json, json_option
from autotune.commands.study_start import start


@click.group()
def study() -> None:
    """Run and inspect tuning studies."""


study.add_command(start)


def _store(read_only: bool = False) -> Any:
    """autotune.db; read-only for the commands that only read (nothing they do changes a file)."""
    from autotune.storage.local import Store

    return Store(read_only=read_only)


def _open(name: str, storage: str | None) -> tuple[Any, Any]:
    """The study to read (a fast SQLite view where possible) and its row in the local store."""
    from autotune.storage.rdb import default_storage_url
    from autotune.storage.reading import open_view

    row = _store(read_only=True).get_study(name)
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

    rows = {r["name"]: r for r in _store(read_only=True).list_studies()}
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

    from autotune.objectives import objective_value

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
    from autotune.storage.results import importances, inference_front, pareto_front, summary
    from autotune.storage.speedups import speedup_factors
    from autotune.tasks import task_of

    st, row = _open(name, storage)
    rows = trial_rows(st)
    data = {
        "summary": summary(st, row, rows),
        "trials": [r.to_dict() for r in rows],
        "importances": importances(st, rows),
        "confirmation": st.user_attrs.get("confirmation"),
        # the confirmed speedup as same training x recipe (None for a study that recorded none)
        "speedups": speedup_factors(st.user_attrs),
        # how the study came to the settings it confirmed (autotune.study.answer)
        "answer": st.user_attrs.get("answer"),
    }
    if len(st.directions) > 1:
        data["pareto_front"] = [r.number for r in pareto_front(st, rows)]
    spec = st.user_attrs.get("autotune") or {}
    serving = task_of(spec).serves_model
    if serving:  # the accuracy guard: the unoptimized model's metric and the drop it allows
        data["guard"] = {**(task_of(spec).guard(st.user_attrs, spec) or {}), "checkpoint": spec.get("checkpoint")}
        # the trade-off: complete trials none faster and none less worse, infeasible ones too
        data["pareto"] = inference_front(rows)
    if as_json:
        echo_json(data)
    elif serving:
        from autotune.commands.inference_output import print_inference_show

        print_inference_show(data)
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
    from autotune.storage.export import confirmed_answer
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
    answer = confirmed_answer(st.user_attrs) if len(st.directions) == 1 else None
    if answer is not None:  # what the study confirmed: the trial's recipe, riders dropped, systems fitted
        out[0].update(settings=answer["settings"], answer=True)
    if as_json:
        echo_json(out[0] if len(out) == 1 else out)
        return
    from autotune.objectives import objective_values

    objective = (st.user_attrs.get("autotune") or {}).get("objective")
    for o in out:
        said = " (the confirmed answer: its recipe without riders, systems knobs fitted)" if o.get("answer") else ""
        click.echo(f"trial {o['number']}: {objective_values(objective, o['values'])}{said}")
        for k, v in o["settings"].items():
            click.echo(f"  {k} = {v}")  # exact: this is what a user copies


@study.command("export")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml", show_default=True)
@click.option("--trial", "trial_number", type=int, default=None, help="Export this trial instead of the best.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
@click.option("--model", "model_out", type=click.Path(dir_okay=False), default=None, metavar="OUT",
              help="Inference study: write the served model to OUT (load it with autotune.load_served(OUT)) "
                   "and its measured figures to OUT.json.")
@click.option("--trust-pickle", is_flag=True,
              help="--model: read the study's checkpoint even if it is of autotune's first format, which holds "
                   "pickled objects that run code when read; only for a file you trust.")
@storage_option
def export(name: str, fmt: str, trial_number: int | None, output: str | None, model_out: str | None,
           trust_pickle: bool, storage: str | None) -> None:
    """Export the best configuration; `autotune trial run --config FILE` accepts it."""
    from autotune.storage.export import export_config

    st, _ = _open(name, storage)
    if model_out:
        from autotune.commands.study_export import export_model

        click.echo(export_model(st, model_out, trial_number, trust_pickle=trust_pickle))
        return
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
