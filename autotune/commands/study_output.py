"""How a study shows itself without the terminal UI: one line per finished trial, then a report."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from autotune.formatting import plain as _v
from autotune.metrics import Metric, metric_value
from autotune.intervals import MIN_COVERAGE
from autotune.storage.results import confirmed
from autotune.formatting import settings_text as _settings
from autotune.formatting import why_faster_text
from autotune.study.events import TRIAL_FINISHED, StudyEvent

STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


class LineReporter:
    """A study listener (autotune.study.events): one line per finished trial, to stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.console = Console(stderr=True, highlight=False)
        self.quiet = quiet
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
            value = _v(data["value"]) if state == "COMPLETE" else (data.get("reason") or "")
            duration = f"{data['duration']:.1f}s" if data.get("duration") else "-"
            settings = _settings(data["settings"], data.get("searched") or _KEYS)
            # reasons and settings are text, not markup: "[enforce fail at ...]" must stay
            self.console.print(
                f"[{data['done']:>3}/{data['total']}] trial {data['number']:<3}{tag} "
                f"[{style}]{state:<8}[/] {duration:>6}  {escape(str(value))}{best}  [dim]{escape(settings)}[/]"
            )
        elif event.kind == "confirming":
            self.console.print(f"[dim]confirming: {data['which']} run {data['run']}/{data['of']}[/]")
        elif event.kind == "explaining":
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
        line = (f"  trial {data['number']}: {data['fraction']:.0%}, {steps}, {data['samples_per_s']:,.0f} samples/s, "
                f"{data['train_time']:.1f} s of training")
        self.console.file.write("\r\x1b[K" + line[: max(10, self.console.width - 1)])
        self.console.file.flush()
        self.live_line = True


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
    return f"its {conf['coverage']:.0%} interval {low:.2f}-{high:.2f}x"


def print_notes(console: Console, notes: dict[str, Any] | None, title: str = "knob notes") -> None:
    """What the knobs recorded of what they did (TrainingPlan.notes)."""
    if notes:
        console.print(f"[bold]{title}[/]: " + escape("; ".join(f"{k}: {v}" for k, v in notes.items())))


def print_why_faster(console: Console, path: dict[str, Any] | None) -> None:
    lines = why_faster_text(path)
    if lines:
        console.print("[bold]why it is faster[/] (the path from the baseline, one knob at a time, each measured):")
        for line in lines:
            console.print("  " + escape(line))


def print_noise(console: Console, report: dict[str, Any], conf: dict[str, Any] | None) -> None:
    """The machine's noise as the study measured it, and a warning when it hides differences the
    study is looking for (a speedup that is not confirmed, or one near the noise)."""
    noise = report.get("noise")
    if not noise:
        return
    margin = noise["margin"]
    load = noise.get("load_avg")
    where = f" (load average {load:.1f} on {report.get('cpu_count')} cores)" if load is not None else ""
    if noise.get("noisy"):
        shown = conf.get("speedup_median") if conf else None
        console.print(
            f"[yellow]noisy machine[/]: run-to-run noise +/-{margin:.0%}{where} hides differences below "
            f"{1 + margin:.2f}x" + (f" (the speedup found is {shown:.2f}x)" if shown else "")
            + "; run it on an idle machine, or with more re-runs (--confirm 5)"
        )
    else:
        how = "the baseline's re-runs" if noise.get("source") == "re-runs" else "the baseline's steps"
        console.print(f"[dim]noise: +/-{margin:.0%} ({how}){where}[/]")


_KEYS = ["batch_size", "optimizer", "learning_rate", "precision", "workers", "channels_last",
         "torch_compile", "pruning", "threads"]


def print_report(report: dict[str, Any]) -> None:
    console = Console(highlight=False)
    c = report["counts"]
    metric = Metric.from_dict(report.get("metric"))
    target = f"{metric.name}{metric.operator}{_v(report['target'])}" if report.get("target") is not None else "-"
    console.print(
        f"\n[bold]study {report['study']}[/]  {report['workload']} on {report['device']}, "
        f"objective {report['objective']}, budget {report['budget']}, "
        f"metric {metric.describe()}, target {target}"
    )
    console.print(f"trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed")
    if report.get("baseline_still_improving"):
        console.print(
            f"[yellow]weak target[/]: the baseline's {metric.name} was still improving at its last validation, so "
            f"the target is what an under-trained model reaches; a longer budget (--budget-epochs) sets a "
            f"stronger one"
        )
    if "pareto_front" in report:
        table = Table("trial", metric.name, "throughput", "peak memory MiB", "settings", title="Pareto front")
        for t in report["pareto_front"]:
            acc, thr, mem = t["value"]
            table.add_row(str(t["number"]), _v(acc), _v(thr, 5), _v(mem / 2**20, 5), _settings(t["settings"], _KEYS))
        console.print(table)
        return
    best, base = report.get("best"), report.get("baseline")
    if not best:
        console.print("[red]no trial completed[/]: see `autotune study show " + report["study"] + "`")
        return
    table = Table("", "baseline" + (f" (trial {base['number']})" if base else ""), f"best (trial {best['number']})",
                  title="baseline vs best")
    table.add_row("objective", _v(base["value"]) if base else "-", _v(best["value"]))
    for key, label, scale in (
        ("projected_time_to_target", "projected to target (s)", 1.0),
        ("time_to_target", "trained to target (s)", 1.0), ("step_time", "steady step (ms)", 1000.0),
        ("setup_time", "set-up (s)", 1.0), ("throughput", "throughput (samples/s)", 1.0),
        ("metric_value", metric.describe(), 1.0), ("step_time_p50", "step p50 (ms)", 1000.0),
        ("data_wait_fraction", "data wait", 1.0), ("peak_memory_bytes", "peak memory (MiB)", 1 / 2**20),
    ):
        b = base["metrics"].get(key) if base else None
        t = best["metrics"].get(key)
        table.add_row(label, _v(b * scale if b is not None else None), _v(t * scale if t is not None else None))
    console.print(table)
    console.print("[bold]best configuration[/]: " + _settings(best["settings"]))
    playoff = report.get("playoff")
    if playoff:
        console.print(
            f"chosen by re-running the {len(playoff['contenders'])} trials within the noise (+{playoff['margin']:.0%}) "
            "of the best once each: " + "; ".join(
                f"trial {c['number']} {_v(c['search_value'])} then {_v(c['rerun_value'])}" for c in playoff["contenders"]
            ) + f" -> trial {playoff['number']}"
        )
    crowded = oversubscribed(best["settings"], report.get("cpu_count"))
    if crowded:
        console.print(f"[yellow]oversubscribed[/]: {crowded}; a speedup from it may not survive other work "
                      f"on the machine")
    print_notes(console, best["metrics"].get("notes"))
    conf = report.get("confirmation")
    missed = {
        label: sum(1 for r in conf["runs"] if r[label]["value"] is None) for label in ("baseline", "best")
    } if conf and conf.get("runs") else {}
    why = ("time-to-accuracy: the target was not reached in the budget"
           if report.get("objective") == "time-to-accuracy" else "the run gave no value")
    if conf and conf.get("speedup_median") is not None and not confirmed(conf):
        console.print(
            f"[yellow]speedup {conf['speedup_median']:.2f}x not confirmed[/]: "
            + (f"{interval_text(conf)} includes 1.00x over {conf['valid_pairs']} of {conf['repeats']} paired "
               f"re-runs of best and baseline" if conf["coverage"] >= MIN_COVERAGE else
               f"{conf['valid_pairs']} of {conf['repeats']} paired re-runs gave a ratio, too few to bound it "
               f"(it takes 3)")
            + "; more re-runs (--confirm 5) narrow it"
        )
    elif conf and conf.get("speedup_median") is not None:
        console.print(
            f"[bold green]confirmed speedup {conf['speedup_median']:.2f}x[/] "
            f"(min {conf['speedup_min']:.2f}x, max {conf['speedup_max']:.2f}x over "
            f"{conf['valid_pairs']} of {conf['repeats']} paired re-runs of best and baseline"
            + (f"; {interval_text(conf)})" if conf.get("interval") else ")")
        )
        if any(missed.values()):
            # A re-run without a value (target missed, run failed) leaves its pair out of the ratio.
            console.print(
                f"  re-runs that gave no value: baseline {missed['baseline']}, best {missed['best']} "
                f"of {conf['repeats']} each ({why})"
            )
    elif report.get("speedup_in_search"):
        console.print(f"speedup during the search: {report['speedup_in_search']:.2f}x (not confirmed)")
        if missed:
            # confirmation ran, yet no pair had a value on both sides: say so, it is the finding
            hint = ("the best may have been a lucky seed: try `--confirm 5`, or a budget with more epochs"
                    if missed["best"] > 0 else "the best gave a value every time, the baseline did not")
            console.print(
                f"  [yellow]no re-run pair gave both a value[/]: of {conf['repeats']} fresh-seed re-runs each, "
                f"the best gave none in {missed['best']} and the baseline in {missed['baseline']} ({why}); "
                f"{hint}"
            )
    if conf and conf.get("projection"):
        console.print("projected vs measured in the re-runs: " + "; ".join(
            f"{label} {_v(p['projected'])} s vs {_v(p['measured'])} s ({p['error']:+.0%})"
            for label, p in conf["projection"].items()
        ))
    print_why_faster(console, report.get("why_faster"))
    print_noise(console, report, conf)
    console.print(f"export it: autotune study export {report['study']} > best.toml; "
                  f"autotune trial run --config best.toml")


def print_show(data: dict[str, Any]) -> None:
    console = Console(highlight=False)
    s = data["summary"]
    console.print(" ".join(f"[bold]{k}[/]={escape(_v(v))}" for k, v in s.items() if not isinstance(v, dict)))
    metric = Metric.from_dict(s.get("metric_info"))
    table = Table("#", "state", "value", "throughput", metric.name, "duration", "reason / settings")
    for t in data["trials"]:
        metrics = t.get("metrics", {})
        dur = t.get("duration")
        table.add_row(
            # Optuna gives pruned trials their last intermediate value; it is not a result.
            str(t["number"]), t.get("state", "?"),
            _v(t.get("value", t.get("values"))) if t.get("state") == "COMPLETE" else "-",
            _v(metrics.get("throughput"), 5), _v(metric_value(metrics, metric.name), 4),
            f"{dur:.1f}s" if isinstance(dur, (int, float)) else "-",
            Text(t.get("reason") or _settings(t.get("settings", {}), _KEYS)),  # text, not markup
        )
    console.print(table)
    if data.get("importances"):
        console.print("[bold]parameter importances[/]")
        for name, value in data["importances"].items():
            console.print(f"  {name:<16} {'#' * int(round(value * 40)):<40} {value:.2f}")
    if data.get("pareto_front"):
        console.print(f"Pareto front: trials {', '.join(map(str, data['pareto_front']))}")
    best = next((t for t in data["trials"] if t["number"] == s.get("best_number")), None)
    if best is not None:
        print_notes(console, best.get("metrics", {}).get("notes"), f"best (trial {best['number']}) notes")
    conf = data.get("confirmation")
    if conf and conf.get("speedup_median") is not None:
        verdict = "confirmed speedup" if confirmed(conf) else "speedup not confirmed:"
        console.print(f"{verdict} {conf['speedup_median']:.2f}x "
                      f"(min {conf['speedup_min']:.2f}x, max {conf['speedup_max']:.2f}x"
                      + (f"; {interval_text(conf)})" if conf.get("interval") else ")"))
