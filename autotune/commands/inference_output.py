"""How an inference study (serving a trained model: `study start --task inference`) shows itself:
the report at its end and `autotune study show`, one row per trial with what serving measured.
Every number goes through autotune.formatting."""

from __future__ import annotations

from typing import Any, Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from autotune.commands.answer_output import print_why_faster
from autotune.commands.study_output import interval_text, print_noise, print_notes
from autotune.formatting import drop, milliseconds, nbytes, percent, rate, ratio, seconds, settings_text, validation
from autotune.metrics import Metric, metric_value
from autotune.storage.results import confirmed

COLUMNS = ("#", "result", "latency p50", "p95", "vs unoptimized", "throughput", "peak memory", "size", "drop", "front")
FRONT_MARK = "◆"
RESULTS = {"PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def changed(settings: dict[str, Any], baseline: dict[str, Any]) -> str:
    """The settings a trial changed from the unoptimized model's: `int8_dynamic=true serve_threads=1`."""
    return settings_text({k: v for k, v in settings.items() if baseline.get(k) != v}) or "-"


def trial_cells(t: dict[str, Any], baseline: dict[str, Any], front: Iterable[int] = ()) -> list[Any]:
    """One trial's row: what serving it measured, each in its unit (throughput at its batch), and
    whether it is on the Pareto front of latency vs metric drop (numbers in `front`)."""
    m = t.get("metrics") or {}
    ran = t.get("state") == "COMPLETE"
    result = ("ok" if t.get("feasible", True) else "guard") if ran else RESULTS.get(t.get("state", ""), "?")
    return [
        str(t["number"]) + ("*" if t.get("baseline") else ""), result,
        milliseconds(m.get("latency_p50")), milliseconds(m.get("latency_p95")),
        "1x" if t.get("baseline") else ratio(m.get("paired_speedup")),
        rate(m.get("throughput")).replace(" samples/s", "/s"),
        nbytes(m.get("peak_memory_bytes")), nbytes(m.get("model_bytes")), drop(m.get("metric_drop")),
        FRONT_MARK if t["number"] in front else "",
    ]


def print_inference_show(data: dict[str, Any]) -> None:
    """`autotune study show NAME` for an inference study."""
    console = Console(highlight=False)
    s = data["summary"]
    metric = Metric.from_dict(s.get("metric_info"))
    guard = data.get("guard") or {}
    console.print(
        f"[bold]{escape(s['name'])}[/] serving {escape(str(s.get('workload')))} on {s.get('device')}: "
        f"{s.get('state')}, {s.get('done')}/{s.get('total')} trials, objective latency p50 at batch 1; "
        f"guard {metric.name} " + (f"{metric.operator}{validation(s.get('target'))} " if s.get("target") is not None
                                   else "") + f"(at most {percent(guard.get('max_drop'))} worse than the "
        f"unoptimized model's {validation(guard.get('reference'))})"
    )
    trials = data["trials"]
    baseline = next((t.get("settings") or {} for t in trials if t.get("baseline")), {})
    batch = baseline.get("serve_batch_size", "-")
    front = data.get("pareto") or []
    table = Table(*COLUMNS, caption=f"* the unoptimized model; throughput at the trial's serve_batch_size ({batch} "
                  "unless changed); vs unoptimized: its speed against the unoptimized model timed beside it in the trial's "
                  "process, what trials are ranked by; guard: worse than the guard allows (infeasible); "
                  f"{FRONT_MARK}: on the Pareto front of latency vs metric drop", caption_justify="left",
                  box=None, pad_edge=False)
    for t in trials:
        table.add_row(*trial_cells(t, baseline, front))
    console.print(table)
    print_front(console, trials, front, guard.get("max_drop"))
    console.print("[bold]what each trial changed[/] (and why one failed or broke the guard):")
    for t in trials:
        line = changed(t.get("settings") or {}, baseline) if not t.get("baseline") else "the unoptimized model"
        if t.get("reason") and (t.get("state") != "COMPLETE" or not t.get("feasible", True)):
            line += f"; {t['reason']}"
        console.print(Text(f"  {t['number']:>3}  {line}"))  # text, not markup
    best = next((t for t in data["trials"] if t["number"] == s.get("best_number")), None)
    if best is not None:
        console.print(f"[bold]best[/]: trial {best['number']}, {milliseconds(best['metrics'].get('latency_p50'))} "
                      f"({metric.name} {validation(metric_value(best['metrics'], metric.name))}): "
                      + escape(changed(best.get("settings") or {}, baseline)))
        print_notes(console, best.get("metrics", {}).get("notes"), f"best (trial {best['number']}) notes")
    print_speedup(console, data.get("confirmation"), s.get("speedup"))


def print_front(console: Console, trials: list[dict[str, Any]], front: list[int], max_drop: float | None) -> None:
    """The Pareto front of latency vs metric drop, fastest first: what each step down in latency
    costs in accuracy, past the guard too (said so)."""
    if not front:
        return
    by_number = {t["number"]: t for t in trials}
    console.print(f"[bold]Pareto front (latency vs metric drop)[/], fastest first; the guard allows "
                  f"{drop(max_drop)}:")
    for number in front:
        t = by_number[number]
        m = t.get("metrics") or {}
        past = "" if t.get("feasible", True) else "  past the guard"
        console.print(Text(f"  {number:>3}  {milliseconds(m.get('latency_p50')):>10}  "
                           f"drop {drop(m.get('metric_drop')):>6}{past}"))


def print_speedup(console: Console, conf: dict[str, Any] | None, in_search: float | None) -> None:
    """The best against the unoptimized model: the confirmation's paired latency ratio, or the
    search's ratio when nothing was confirmed."""
    if conf and conf.get("speedup_median") is not None:
        verdict = "[bold green]confirmed latency speedup" if confirmed(conf) else "[yellow]latency speedup not confirmed:"
        console.print(
            f"{verdict} {ratio(conf['speedup_median'])}[/] (median of {conf['valid_pairs']} of {conf['repeats']} "
            f"paired re-runs, baseline latency / best latency; min {ratio(conf['speedup_min'])}, "
            f"max {ratio(conf['speedup_max'])}" + (f"; {interval_text(conf)})" if conf.get("interval") else ")")
        )
    elif in_search:
        console.print(f"latency speedup during the search: {ratio(in_search)} (not confirmed)")


def print_inference_report(report: dict[str, Any]) -> None:
    """The report `study start --task inference` prints at its end."""
    console = Console(highlight=False)
    c = report["counts"]
    metric = Metric.from_dict(report.get("metric"))
    bound = metric.bound(report["target"]) if report.get("target") is not None else "-"
    console.print(
        f"\n[bold]study {report['study']}[/]  serving {report['workload']} on {report['device']}, objective latency "
        f"p50 at batch 1 ({report['budget']}), guard {bound}"
    )
    console.print(f"trials: {c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed")
    best, base = report.get("best"), report.get("baseline")
    if not best:
        console.print("[red]no trial completed[/]: see `autotune study show " + report["study"] + "`")
        return
    table = Table("", "unoptimized" + (f" (trial {base['number']})" if base else ""), f"best (trial {best['number']})",
                  title="unoptimized vs best")
    for label, key, show in (("latency p50", "latency_p50", milliseconds), ("latency p95", "latency_p95", milliseconds),
                             ("throughput", "throughput", rate), ("peak memory", "peak_memory_bytes", nbytes),
                             ("model size", "model_bytes", nbytes), ("compile time", "compile_time", seconds),
                             (metric.describe(), "metric_value", validation), ("metric drop", "metric_drop", drop)):
        table.add_row(label, show((base or {}).get("metrics", {}).get(key)), show(best["metrics"].get(key)))
    console.print(table)
    console.print("[bold]best configuration[/]: " + escape(settings_text(best["settings"])))
    print_notes(console, best["metrics"].get("notes"))
    print_speedup(console, report.get("confirmation"), report.get("speedup_in_search"))
    print_why_faster(console, report.get("why_faster"))
    print_noise(console, report, report.get("confirmation"))
