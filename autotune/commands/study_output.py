"""How a study shows itself without the terminal UI: one line per finished trial, then a report."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from autotune.answer_text import nothing_held
from autotune.commands.answer_output import print_answer, print_speedups, print_why_faster
from autotune.formatting import (
    load, metric as _metric, metric_label, nbytes, percent, plain as _v, rate, ratio, ratio_range,
    seconds, validation,
)
from autotune.formatting import settings_text as _settings
from autotune.metrics import Metric, metric_value
from autotune.objectives import missed_text, objective_value, objective_values
from autotune.intervals import MIN_COVERAGE
from autotune.storage.results import confirmed
from autotune.study.events import TRIAL_FINISHED, StudyEvent

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


class LineReporter:
    """A study listener (autotune.study.events): one line per finished trial, to stderr."""

    def __init__(self, quiet: bool = False, objective: str | None = None) -> None:
        """`objective`: the study's, so values are shown in its units (3.2s, 5,120 samples/s)."""
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.objective = objective
        self.live_line = False  # a progress line is on screen, to be overwritten

    def __call__(self, event: StudyEvent) -> None:
        if self.quiet:
            return
        data = event.data
        if event.kind == "trial_progress":
            self._progress(data)
            return
        if self.live_line:  # the next line replaces the progress line
            self.console.file.write("\r\x1b[K")
            self.live_line = False
        if event.kind in TRIAL_FINISHED:
            state = data["state"]
            style = STATE_STYLE.get(state, "white")
            tag = " baseline" if data.get("baseline") else ""
            best = " [bold]new best[/]" if data.get("new_best") else ""
            value = _value(self.objective, data["value"]) if state == "COMPLETE" else (data.get("reason") or "")
            duration = seconds(data.get("duration"))
            settings = _settings(data["settings"], data.get("searched") or _KEYS)
            # reasons and settings are text, not markup: "[enforce fail at ...]" must stay
            self.console.print(
                f"[{data['done']:>3}/{data['total']}] trial {data['number']:<3}{tag} "
                f"[{style}]{state:<8}[/] {duration:>6}  {escape(str(value))}{best}  [dim]{escape(settings)}[/]"
            )
        elif event.kind == "confirming":
            self.console.print(f"[dim]confirming: {data['which']} run {data['run']}/{data['of']}[/]")
        elif event.kind in ("explaining", "checking"):
            self.console.print(f"[dim]{escape(event.message)}[/]")
        elif event.kind == "study_paused":
            self.console.print("[yellow]paused[/] (autotune study resume NAME)")
        elif event.kind == "study_resumed":
            self.console.print("[green]resumed[/]")

    def _progress(self, data: dict[str, Any]) -> None:
        """On a terminal, one line that follows the running trial, overwritten in place."""
        if not self.console.is_terminal:
            return
        steps = f"step {data['step']}" + (f"/{data['total_steps']}" if data.get("total_steps") else "")
        line = (f"  trial {data['number']}: {percent(data['fraction'])}, {steps}, {rate(data['samples_per_s'])}, "
                f"{seconds(data['train_time'])} of training")
        self.console.file.write("\r\x1b[K" + line[: max(10, self.console.width - 1)])
        self.console.file.flush()
        self.live_line = True


def _value(objective: str | None, value: Any) -> str:
    """An objective value (or a Pareto trial's values) in the objective's units."""
    if isinstance(value, (list, tuple)):
        return objective_values(objective, value)
    return objective_value(objective, value) if isinstance(value, (int, float)) else _v(value)


def _summary_value(summary: dict[str, Any], key: str, value: Any) -> str:
    """A `study show` summary field in its unit: times in seconds, speedups as ratios."""
    if value is None:
        return "-"
    if key in ("elapsed", "eta", "mean_trial_seconds"):
        return seconds(value)
    if key in ("speedup", "confirmed_speedup"):
        return ratio(value)
    if key == "confirmed_range":
        return ratio_range(*value)
    if key in ("best_value", "best_values"):
        return _value(summary.get("objective"), value)
    return _v(value)


def oversubscribed(settings: dict[str, Any], cores: int | None) -> str | None:
    """Why a configuration asks for more CPU than the machine has (compute threads plus
    DataLoader worker processes over its cores), or None."""
    threads, workers = settings.get("threads"), settings.get("workers") or 0
    if not cores or threads is None or threads + workers <= cores:
        return None
    return f"threads={threads} + workers={workers} > {cores} cores"


def interval_text(conf: dict[str, Any]) -> str:
    """`90% interval 1.80-2.40x`: the confirmation's interval for the median speedup."""
    low, high = conf["interval"]
    if conf["coverage"] < MIN_COVERAGE:
        return f"{conf['valid_pairs']} paired re-run(s): too few to bound it"
    return f"its {percent(conf['coverage'])} interval {ratio_range(low, high)}"


def print_notes(console: Console, notes: dict[str, Any] | None, title: str = "knob notes") -> None:
    """What the knobs recorded of what they did (TrainingPlan.notes)."""
    if notes:
        console.print(f"[bold]{title}[/]: " + escape("; ".join(f"{k}: {_v(v)}" for k, v in notes.items())))


def print_noise(console: Console, report: dict[str, Any], conf: dict[str, Any] | None) -> None:
    """The machine's noise as the study measured it, and a warning when it hides differences the
    study is looking for (a speedup that is not confirmed, or one near the noise)."""
    noise = report.get("noise")
    if not noise:
        return
    margin = noise["margin"]
    load_avg = noise.get("load_avg")
    where = f" (load average {load(load_avg)} on {report.get('cpu_count')} cores)" if load_avg is not None else ""
    if noise.get("busy"):
        # what competed with the trials, not the trials themselves: the search may have found
        # what suits a busy machine (fewer threads), which an idle one would not reward as much
        console.print(
            f"[yellow]busy machine[/]: other processes kept {noise['others']:.1f} of {report.get('cpu_count')} "
            f"cores busy during the trials; the speedup holds for the machine in that state"
        )
    shown = conf.get("speedup_median") if conf else None
    found = f" (the speedup found is {ratio(shown)})" if shown else ""
    if noise.get("noisy") and noise.get("cause") == "run":
        length = f"the baseline reaches its target in {seconds(noise['run_seconds'])}, " if noise.get("run_seconds") else ""
        console.print(
            f"[yellow]runs too short to measure[/]: run-to-run noise +/-{percent(margin)} on a machine that was "
            f"not busy{where}: {length}too short a run to time to better than that, which hides differences "
            f"below {ratio(1 + margin)}{found}; a longer budget (--budget-epochs) or more re-runs (--confirm 5)"
        )
    elif noise.get("noisy"):
        console.print(
            f"[yellow]noisy machine[/]: run-to-run noise +/-{percent(margin)}{where} hides differences below "
            f"{ratio(1 + margin)}{found}; run it on an idle machine, or with more re-runs (--confirm 5)"
        )
    else:
        how = {"re-runs": "the baseline's re-runs", "blocks": "the baseline's timed blocks, in a confirmation pair"}.get(
            noise.get("source") or "", "the baseline's steps")
        console.print(f"[dim]noise: +/-{percent(margin)} ({how}){where}[/]")


_KEYS = ["batch_size", "optimizer", "learning_rate", "precision", "workers", "channels_last",
         "torch_compile", "pruning", "threads"]


def print_report(report: dict[str, Any]) -> None:
    console = Console(highlight=False)
    metric = Metric.from_dict(report.get("metric"))
    _print_heading(console, report, metric)
    if "pareto_front" in report:
        _print_pareto_front(console, report, metric)
        return
    if not report.get("best"):
        console.print("[red]no trial completed[/]: see `autotune study show " + report["study"] + "`")
        return
    _print_best(console, report, metric)
    print_answer(console, report.get("answer"), metric.name)
    conf = report.get("confirmation")
    _print_confirmation(console, report, conf)
    print_speedups(console, report.get("speedups"))
    print_why_faster(console, report.get("why_faster"))
    print_noise(console, report, conf)
    console.print(f"export it: autotune study export {report['study']} > best.toml; "
                  f"autotune trial run --config best.toml")


def _print_heading(console: Console, report: dict[str, Any], metric: Metric) -> None:
    """What the study was (workload, objective, budget, target), its trials, and a weak target."""
    c = report["counts"]
    target = f"{metric.name}{metric.operator}{_v(report['target'])}" if report.get("target") is not None else "-"
    console.print(
        f"\n[bold]study {report['study']}[/]  {report['workload']} on {report['device']}, "
        f"objective {report['objective']}, budget {report['budget']}, "
        f"metric {metric.describe()}, target {target}"
    )
    console.print(f"trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed")
    if report.get("keep_recipe"):
        console.print("searched: systems knobs only (--keep-recipe); the recipe is the baseline's")
    if report.get("refused"):
        who = next(iter(report["refused"].values())).split(" cannot apply")[0]
        console.print(f"not searched after the baseline: {', '.join(sorted(report['refused']))} ({escape(who)} "
                      f"cannot apply them; `study show --json` has why)")
    if report.get("baseline_still_improving"):
        console.print(
            f"[yellow]weak target[/]: the baseline's {metric.name} was still improving at its last validation, so "
            f"the target is what an under-trained model reaches; a longer budget (--budget-epochs) sets a "
            f"stronger one"
        )


def _print_pareto_front(console: Console, report: dict[str, Any], metric: Metric) -> None:
    table = Table("trial", metric.name, "throughput", "peak memory", "settings", title="Pareto front")
    for t in report["pareto_front"]:
        acc, thr, mem = t["value"]
        table.add_row(str(t["number"]), validation(acc), rate(thr), nbytes(mem), _settings(t["settings"], _KEYS))
    console.print(table)


def _print_best(console: Console, report: dict[str, Any], metric: Metric) -> None:
    """The best trial against the baseline, its configuration, how it was chosen, and what may
    not survive other work on the machine."""
    best, base = report["best"], report.get("baseline")
    table = Table("", "baseline" + (f" (trial {base['number']})" if base else ""), f"best (trial {best['number']})",
                  title="baseline vs best")
    objective = report.get("objective")
    table.add_row("objective", _value(objective, base["value"]) if base else "-", _value(objective, best["value"]))
    for key in ("projected_time_to_target", "time_to_target", "step_time", "setup_time", "throughput",
                "metric_value", "step_time_p50", "data_wait_fraction", "peak_memory_bytes"):
        label = metric.describe() if key == "metric_value" else metric_label(key)
        b = base["metrics"].get(key) if base else None
        t = best["metrics"].get(key)
        table.add_row(label, _metric(key, b), _metric(key, t))
    console.print(table)
    console.print("[bold]best configuration[/]: " + _settings(best["settings"]))
    playoff = report.get("playoff")
    if playoff:
        console.print(
            f"chosen by re-running the {len(playoff['contenders'])} trials within the noise (+{percent(playoff['margin'])}) "
            "of the best once each: " + "; ".join(
                f"trial {c['number']} {_value(objective, c['search_value'])} then {_value(objective, c['rerun_value'])}"
                for c in playoff["contenders"]
            ) + f" -> trial {playoff['number']}"
        )
    crowded = oversubscribed(best["settings"], report.get("cpu_count"))
    if crowded:
        console.print(f"[yellow]oversubscribed[/]: {crowded}; a speedup from it may not survive other work "
                      f"on the machine")
    print_notes(console, best["metrics"].get("notes"))


def _print_confirmation(console: Console, report: dict[str, Any], conf: dict[str, Any] | None) -> None:
    """What the paired re-runs of best and baseline said of the speedup, the re-runs that gave no
    value, and how the projection held in them."""
    missed = {
        label: sum(1 for r in conf["runs"] if r[label]["value"] is None) for label in ("baseline", "best")
    } if conf and conf.get("runs") else {}
    why = missed_text(report.get("objective"))
    if conf and conf.get("speedup_median") is not None and not confirmed(conf):
        _print_unconfirmed(console, conf)
    elif conf and conf.get("speedup_median") is not None:
        _print_confirmed(console, conf, missed, why)
    elif _baseline_is_best(report):
        _print_nothing_found(console, report)
    elif report.get("speedup_in_search"):
        _print_search_speedup(console, report, conf, missed, why)
    if conf and conf.get("projection"):
        console.print("projected vs measured in the re-runs: " + "; ".join(
            f"{label} {seconds(p['projected'])} vs {seconds(p['measured'])} ({'+' if p['error'] >= 0 else ''}{percent(p['error'])})"
            for label, p in conf["projection"].items()
        ))
    if conf and conf.get("recipe_check"):
        console.print(recipe_check_text(conf["recipe_check"]))


def recipe_check_text(check: dict[str, Any]) -> str:
    """--keep-recipe's check, in one line: the best's curve against the baseline's."""
    if check.get("agree") is None:
        return f"[yellow]recipe kept, curves not compared[/]: {check.get('why')}"
    gap, noise = validation(check["max_gap"]), validation(check["noise"])
    where = (f"{check['metric']} at {check['validations']} validations of {check['pairs']} same-seed pairs; "
             f"reseeding the baseline moves it by up to {noise}")
    if check["agree"]:
        return f"[green]recipe kept[/]: the best's curve stays within {gap} of the baseline's ({where})"
    return f"[red]recipe not kept[/]: the best's curve is {gap} away from the baseline's ({where})"


def _print_unconfirmed(console: Console, conf: dict[str, Any]) -> None:
    console.print(
        f"[yellow]speedup {ratio(conf['speedup_median'])} not confirmed[/]: "
        + (f"{interval_text(conf)} {_against_one(conf)} over {conf['valid_pairs']} of {conf['repeats']} paired "
           f"re-runs of best and baseline" if conf["coverage"] >= MIN_COVERAGE else
           f"{conf['valid_pairs']} of {conf['repeats']} paired re-runs gave a ratio, too few to bound it "
           f"(it takes 3)")
        + "; more re-runs (--confirm 5) narrow it"
    )


def _against_one(conf: dict[str, Any]) -> str:
    """Where an unconfirmed interval lies: across 1.00x, or wholly below it (slower)."""
    interval = conf.get("interval")
    return "lies below 1.00x: slower than the baseline" if interval and interval[1] < 1.0 else "includes 1.00x"


def _print_confirmed(console: Console, conf: dict[str, Any], missed: dict[str, int], why: str) -> None:
    console.print(
        f"[bold green]confirmed speedup {ratio(conf['speedup_median'])}[/] "
        f"(min {ratio(conf['speedup_min'])}, max {ratio(conf['speedup_max'])} over "
        f"{conf['valid_pairs']} of {conf['repeats']} paired re-runs of best and baseline"
        + (f"; {interval_text(conf)})" if conf.get("interval") else ")")
    )
    if any(missed.values()):
        # A re-run without a value (target missed, run failed) leaves its pair out of the ratio,
        # except a baseline that trained its whole budget: its pair counts at a lower bound.
        console.print(
            f"  re-runs that gave no value: baseline {missed['baseline']}, best {missed['best']} "
            f"of {conf['repeats']} each ({why})"
        )
    if conf.get("lower_bound_pairs"):
        console.print(
            f"  {conf['lower_bound_pairs']} pair(s) at a lower bound: the baseline's re-run ended its budget "
            f"just short of the target, so its whole run stands for its time to it (the speedup is "
            f"at least that)"
        )


def _baseline_is_best(report: dict[str, Any]) -> bool:
    best, baseline = report.get("best"), report.get("baseline")
    return bool(best and baseline) and best["number"] == baseline["number"]


def _print_nothing_found(console: Console, report: dict[str, Any]) -> None:
    """The baseline stayed the best: say so, and what became of the rest."""
    c = report["counts"]
    others = c["complete"] - 1
    console.print(
        f"[yellow]nothing found[/]: no configuration beat the baseline ({others} other trial(s) completed "
        f"slower, {c['pruned']} pruned as slower than the best beyond the noise or short of the target, "
        f"{c['failed']} failed); nothing to confirm"
        + (" among systems knobs alone: the baseline's step is already as fast as they make it here"
           if report.get("keep_recipe") else "")
    )


def _print_search_speedup(
    console: Console, report: dict[str, Any], conf: dict[str, Any] | None, missed: dict[str, int], why: str
) -> None:
    """No confirmed speedup: the search's, and why no re-run pair gave one when confirmation ran."""
    if nothing_held(report.get("answer")):  # the lines above say why each did not hold
        console.print(f"[yellow]no speedup[/]: the search's {ratio(report['speedup_in_search'])} at the budget "
                      "did not hold at your run's length")
        return
    console.print(f"speedup during the search: {ratio(report['speedup_in_search'])} (not confirmed)")
    if missed:
        # confirmation ran, yet no pair had a value on both sides: say so, it is the finding
        hint = ("the best may have been a lucky seed: try `--confirm 5`, or a budget with more epochs"
                if missed["best"] > 0 else "the best gave a value every time, the baseline did not")
        console.print(
            f"  [yellow]no re-run pair gave both a value[/]: of {conf['repeats']} fresh-seed re-runs each, "
            f"the best gave none in {missed['best']} and the baseline in {missed['baseline']} ({why}); "
            f"{hint}"
        )


def print_show(data: dict[str, Any]) -> None:
    console = Console(highlight=False)
    s = data["summary"]
    console.print(" ".join(f"[bold]{k}[/]={escape(_summary_value(s, k, v))}" for k, v in s.items()
                           if not isinstance(v, dict) and k != "speedups"))  # its own line, below
    metric = Metric.from_dict(s.get("metric_info"))
    table = Table("#", "state", "value", "throughput", metric.name, "duration", "reason / settings")
    for t in data["trials"]:
        metrics = t.get("metrics", {})
        dur = t.get("duration")
        table.add_row(
            # Optuna gives pruned trials their last intermediate value; it is not a result.
            str(t["number"]), t.get("state", "?"),
            objective_values(s.get("objective"), t.get("values")) if t.get("state") == "COMPLETE" else "-",
            _metric("throughput", metrics.get("throughput")), validation(metric_value(metrics, metric.name)),
            seconds(dur) if isinstance(dur, (int, float)) else "-",
            Text(t.get("reason") or _settings(t.get("settings", {}), _KEYS)),  # text, not markup
        )
    console.print(table)
    if data.get("importances"):
        console.print("[bold]parameter importances[/]")
        for name, value in data["importances"].items():
            console.print(f"  {name:<16} {'#' * int(round(value * 40)):<40} {percent(value)}")
    if data.get("pareto_front"):
        console.print(f"Pareto front: trials {', '.join(map(str, data['pareto_front']))}")
    best = next((t for t in data["trials"] if t["number"] == s.get("best_number")), None)
    if best is not None:
        print_notes(console, best.get("metrics", {}).get("notes"), f"best (trial {best['number']}) notes")
    print_answer(console, data.get("answer"), metric.name)
    conf = data.get("confirmation")
    if conf and conf.get("speedup_median") is not None:
        verdict = "confirmed speedup" if confirmed(conf) else "speedup not confirmed:"
        console.print(f"{verdict} {ratio(conf['speedup_median'])} "
                      f"(min {ratio(conf['speedup_min'])}, max {ratio(conf['speedup_max'])}"
                      + (f"; {interval_text(conf)})" if conf.get("interval") else ")"))
    print_speedups(console, data.get("speedups"))
