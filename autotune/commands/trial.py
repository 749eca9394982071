"""`autotune trial run`: train one configuration for real and print what it measured."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import click

from autotune.commands.options import echo_json, get_registry, json_option, registry_options
from autotune.statuses import FAILED_RUN_STATUSES



def budget_options(fn: Any) -> Any:
    for decl, kind, help_ in (
        ("--budget-seconds", float, "Train for this many seconds of training time."),
        ("--budget-steps", int, "Train for this many optimizer steps."),
        ("--budget-epochs", int, "Train for this many epochs (default: 3)."),
    ):
        fn = click.option(decl, type=kind, default=None, help=help_)(fn)
    return fn


def make_budget(epochs: int | None, steps: int | None, seconds: float | None, default_epochs: int = 3) -> Any:
    from autotune.budget import Budget

    if epochs is None and steps is None and seconds is None:
        epochs = default_epochs
    return Budget(epochs=epochs, steps=steps, seconds=seconds)


def workload_options(fn: Any) -> Any:
    fn = click.option("--download", is_flag=True, help="Allow torchvision datasets to download (needs internet).")(fn)
    fn = click.option("--data-dir", type=click.Path(file_okay=False), help="Where cifar10/mnist data lives.")(fn)
    fn = click.option(
        "--workload", "-w", default=None, metavar="NAME|MODULE:FUNC",
        help="A registered workload (digits, cifar10, mnist, synthetic-resnet18) or an import path. Default: digits.",
    )(fn)
    return fn


def resolve_device(device: str | None) -> Any:
    from autotune.errors import UsageError
    from autotune.hardware import available_device_types, detect

    if device is not None:
        kind = device.split(":")[0]
        if kind not in available_device_types():
            raise UsageError(
                f"--device {device}: not available here (available: {', '.join(available_device_types())})"
            )
        return detect(kind)
    return detect()


@click.group()
def trial() -> None:
    """Run single configurations."""


@dataclass
class RunArgs:
    """`trial run`'s command line as click parses it (its parameters by name), and what is read
    from it in order: the config file, the budget, the target, the workload to train."""

    workload: str | None
    data_dir: str | None
    download: bool
    assignments: tuple[str, ...]
    config_file: str | None
    budget_epochs: int | None
    budget_steps: int | None
    budget_seconds: float | None
    device: str | None
    seed: int
    target: str | None
    metric: str | None
    script: str | None
    save_model: str | None
    script_args: tuple[str, ...]
    as_json: bool
    plugin_paths: tuple[str, ...]
    disabled_knobs: tuple[str, ...]

    def check(self) -> None:
        from autotune.errors import UsageError

        if self.script_args and self.script is None:
            raise UsageError(
                f"unexpected arguments {' '.join(self.script_args)!r} (arguments after -- go to a --script)"
            )
        if self.save_model and self.script is not None:
            raise UsageError("--save-model saves a workload's model; a --script saves its own")

    def read_config(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The --config file's settings and run (empty without one); its workload becomes the
        run's unless --workload names one."""
        from autotune.settings import load_config_file

        if not self.config_file:
            return {}, {}
        config = load_config_file(self.config_file)
        self.workload = self.workload or config["workload"]
        return dict(config["settings"]), config["run"]

    def budget(self, run: dict[str, Any]) -> Any:
        if self.budget_epochs is None and self.budget_steps is None and self.budget_seconds is None:
            # an exported study's budget, so the run repeats the study's trial (the CLI's wins)
            self.budget_epochs, self.budget_steps, self.budget_seconds = (
                run.get(k) for k in ("epochs", "steps", "seconds")
            )
        return make_budget(self.budget_epochs, self.budget_steps, self.budget_seconds)

    def goal(self, run: dict[str, Any]) -> Any:
        """--target, else the config's target; None without either."""
        from autotune.metrics import Target

        goal = Target.parse(self.target) if self.target is not None else None
        if goal is None and run.get("target") is not None:
            goal = Target(float(run["target"]), run.get("target_metric"))
        return goal

    def what_to_train(self, registry: Any, goal: Any, override: Any) -> tuple[str, Any, Any]:
        """The workload's spec, the workload (a --script's, or a config's `script:PATH`, sets
        `script`), and the metric the run is judged by."""
        from autotune.errors import UsageError
        from autotune.metrics import SCRIPT_METRIC, Metric, study_metric
        from autotune.spec import DEFAULT_WORKLOAD
        from autotune.workloads import load_workload, script_workload

        if self.script is None and self.workload is not None and self.workload.startswith("script:"):
            self.script = self.workload.removeprefix("script:")  # an exported config of a --script study
            if not os.path.isfile(self.script):
                raise UsageError(f"the config's script {self.script} is not there")
        if self.script is not None:
            spec = f"script:{self.script}"
            return spec, script_workload(spec), study_metric(Metric.named(SCRIPT_METRIC), goal, override)
        spec = self.workload or DEFAULT_WORKLOAD
        wl = load_workload(spec, registry, data_dir=self.data_dir, download=self.download)
        return spec, wl, study_metric(wl.primary_metric, goal, override)


@trial.command("run")
@workload_options
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="A setting, e.g. --set batch_size=256 --set precision=bf16 (repeatable).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="A TOML or JSON config (e.g. from `autotune study export`); --set wins over it.")
@budget_options
@click.option("--device", default=None, help="cuda, cuda:1, mps or cpu (default: best available).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, shuffling and augmentation.")
@click.option("--target", default=None, metavar="VALUE|NAME<=VALUE",
              help="Value of the workload's metric whose training time to report (time_to_target), e.g. 0.9 "
                   "or val_loss<=1.9.")
@click.option("--metric", default=None, metavar="NAME[:min|max]",
              help="The validation metric to judge the run by (default: the workload's; val_loss for a script).")
@click.option("--script", default=None, type=click.Path(dir_okay=False, exists=True), metavar="PATH",
              help="Run your own training script (autotune.session API) instead of a workload; arguments after "
                   "-- go to it.")
@click.option("--save-model", default=None, type=click.Path(dir_okay=False), metavar="PATH",
              help="Write the trained model there when the run ends well (with its workload and settings), "
                   "for `study start --task inference --checkpoint PATH`.")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@json_option
@registry_options
def run_cmd(**params: Any) -> None:
    """Train one configuration of a workload and print its measured metrics.

    Settings not given keep the workload's baseline recipe (batch 64, SGD lr=0.01 momentum 0.9,
    fp32, no workers, no pruning for the built-ins). Exit code 1 when the run fails.
    """
    from autotune.metrics import Metric
    from autotune.run import engine
    from autotune.settings import parse_assignments, resolve_settings

    args = RunArgs(**params)
    args.check()
    overrides, run = args.read_config()
    budget = args.budget(run)
    goal = args.goal(run)
    override = Metric.parse(args.metric) if args.metric else None
    overrides.update(parse_assignments(list(args.assignments)))
    registry = get_registry(args.plugin_paths, args.disabled_knobs)
    hardware = resolve_device(args.device)
    spec, wl, judged = args.what_to_train(registry, goal, override)
    settings = resolve_settings(registry, hardware, wl, overrides)
    if args.script is not None:  # a knob that cannot act in the script's own loop: exit 2, with why
        from autotune.api import refuse_in_own_loop

        refuse_in_own_loop(registry, hardware, settings)
    if not args.as_json:
        click.echo(f"training {spec} on {hardware.device_type} for {budget.describe()} ...", err=True)
    options = engine.RunOptions(
        seed=args.seed, target=goal.value if goal else None, evals_per_epoch=int(run.get("evals_per_epoch", 1)),
        evals_per_budget=int(run.get("evals_per_budget", 0)),
        metric=judged.name, direction=judged.direction, save_model=args.save_model,
    )
    if args.script is not None:
        result = _run_script(
            args.script, args.script_args, settings, registry, hardware, budget, args.device, options
        )
    else:
        result = engine.run(wl, settings, registry, hardware, budget, device=args.device, options=options)
    _report_run(result, spec, judged, budget, args.as_json)


def _report_run(result: Any, spec: str, judged: Any, budget: Any, as_json: bool) -> None:
    """What the run measured, as JSON or as rows; exit code 1 when it failed."""
    data = result.to_dict()
    tb = data.pop("traceback")
    if click.get_current_context().find_root().params.get("debug") and tb:
        click.echo(tb, err=True)
    data["workload"] = spec
    data["metric"] = judged.to_dict()
    data.update(data.pop("rates") or {})
    data["budget"] = budget.describe()
    if as_json:
        echo_json(data)
    else:
        _print_result(data)
    if result.status in FAILED_RUN_STATUSES:
        if not as_json:
            click.echo(f"autotune: run {result.status}: {result.error}", err=True)
        raise SystemExit(1)


def _run_script(
    script: str, script_args: tuple[str, ...], settings: dict[str, Any], registry: Any, hardware: Any,
    budget: Any, device: str | None, options: Any,
) -> Any:
    """One run of a script in this process, measured as a trial measures it."""
    import dataclasses

    from autotune.launch.requests import ScriptRequest
    from autotune.launch.script import run_script

    class NoStudy:  # nobody prunes a single run; progress goes nowhere
        on_eval = None
        on_progress = None

    # the settings are resolved here already: the request says only how the script runs
    request = ScriptRequest(script=script, script_args=script_args, budget=dataclasses.asdict(budget),
                            options=options, device=device)
    return run_script(request, settings, registry, hardware, NoStudy())


def _fmt(value: Any, unit: str = "", scale: float = 1.0, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}g}{unit}"


def _print_result(d: dict[str, Any]) -> None:
    rows = [
        ("status", d["status"]),
        ("settings", ", ".join(f"{k}={v}" for k, v in d["settings"].items())),
        ("throughput", _fmt(d["throughput"], " samples/s", digits=5)),
        ("step time p50/p95", f"{_fmt(d['step_time_p50'], ' ms', 1000)} / {_fmt(d['step_time_p95'], ' ms', 1000)}"),
        ("data wait", _fmt(d["data_wait_fraction"], "%", 100, 3)),
        ("peak memory", _fmt(d["peak_memory_bytes"], " MiB", 1 / 2**20, 5)),
        *((name, _fmt(value)) for name, value in d["metrics"].items()),
        ("nonzero weights", _fmt(d["nonzero_fraction"])),
        ("train / wall time", f"{_fmt(d['train_time'], ' s')} / {_fmt(d['wall_time'], ' s')}"),
        ("steady step", _fmt(d.get("step_time"), " ms", 1000)),
        ("one-time costs", ", ".join(f"{k} {_fmt(v, ' s')}" for k, v in (d.get("one_time") or {}).items()) or "-"),
    ]
    rows[3:3] = [(rate.replace("_per_s", "/s"), _fmt(d[rate], digits=5)) for rate in d if rate.endswith("_per_s")]
    if d.get("target") is not None:
        from autotune.metrics import Metric

        metric = Metric.from_dict(d["metric"])
        rows.append((f"time to {metric.bound(d['target'])}", _fmt(d["time_to_target"], " s")))
        rows.append(("projected", _fmt(d.get("projected_time_to_target"), " s")))
    for knob, note in d.get("notes", {}).items():
        rows.append((f"note {knob}", str(note)))
    if d.get("saved_model"):
        saved = d["saved_model"]
        rows.append(("saved model", saved["path"] + (" (its layers changed shape: loading reshapes a fresh model)"
                                                      if saved.get("structure") == "reshaped" else "")))
    for label, value in rows:
        click.echo(f"{label:<18} {value}")


@trial.command("serve")
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="A model written by `autotune trial run --save-model FILE`.")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="An inference setting, e.g. --set int8_dynamic=true --set serve_threads=1 (repeatable).")
@click.option("--device", default=None, help="cuda, cuda:1, mps or cpu (default: best available).")
@click.option("--iterations", type=click.IntRange(min=1), default=30, show_default=True,
              help="Timed calls for each latency and throughput (after warm-up).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Where cifar10/mnist data lives.")
@click.option("--trust-pickle", is_flag=True,
              help="Read a checkpoint of autotune's first format, which holds pickled objects that run code when "
                   "read; only for a file you trust.")
@json_option
@registry_options
def serve_cmd(checkpoint: str, assignments: tuple[str, ...], device: str | None, iterations: int,
              data_dir: str | None, trust_pickle: bool, as_json: bool, plugin_paths: tuple[str, ...],
              disabled_knobs: tuple[str, ...]) -> None:
    """Serve a trained model once under chosen inference settings and print what it measured.

    Latency of one call at batch 1, throughput at serve_batch_size, peak memory, the model's size
    on disk and the workload's metric on its validation set, with its drop against the metric
    recorded in the checkpoint. Exit code 1 when serving fails.
    """
    from autotune.formatting import drop, metric_label
    from autotune.formatting import metric as shown
    from autotune.inference.serve import serve
    from autotune.inference.types import InferenceOptions
    from autotune.metrics import Metric
    from autotune.registry import load_registry
    from autotune.run.saving import read_checkpoint
    from autotune.settings import parse_assignments, resolve_settings
    from autotune.workloads import load_workload

    registry = load_registry(plugin_paths=plugin_paths, disabled_knobs=disabled_knobs, task="inference")
    hardware = resolve_device(device)
    payload = read_checkpoint(checkpoint, trust_pickle=trust_pickle)
    wl = load_workload(payload["workload"], registry, data_dir=data_dir or payload.get("data_dir"))
    metric = Metric.from_dict(payload.get("metric"))
    settings = resolve_settings(registry, hardware, wl, parse_assignments(list(assignments)))
    options = InferenceOptions(checkpoint=checkpoint, iterations=iterations, metric=metric.name,
                               direction=metric.direction)
    result = serve(registry, hardware, wl, payload, settings, options, device=device)
    data = result.to_dict()
    tb = data.pop("traceback")
    if click.get_current_context().find_root().params.get("debug") and tb:
        click.echo(tb, err=True)
    trained = (payload.get("metrics") or {}).get(metric.name)
    data["metric"] = metric.to_dict()
    data["trained_metric_value"] = trained
    if trained is not None and result.metric_value is not None:
        data["metric_drop"] = metric.drop(trained, result.metric_value)
    if as_json:
        echo_json(data)
    else:
        rows = [("status", data["status"]), ("settings", ", ".join(f"{k}={v}" for k, v in data["settings"].items()))]
        rows += [(metric_label(key), shown(key, data[key])) for key in (
            "latency_p50", "latency_p95", "throughput", "peak_memory_bytes", "model_bytes", "compile_time")]
        rows += [(f"{metric.name}", shown(metric.name, data["metric_value"])),
                 ("trained", shown(metric.name, trained)), ("metric drop", drop(data.get("metric_drop")))]
        rows += [(f"note {k}", str(v)) for k, v in data["notes"].items()]
        for label, value in rows:
            click.echo(f"{label:<18} {value}")
    if result.status in FAILED_RUN_STATUSES:
        if not as_json:
            click.echo(f"autotune: serving {result.status}: {result.error}", err=True)
        raise SystemExit(1)


def register(cli: click.Group) -> None:
    cli.add_command(trial)
