"""Each training lever alone against the workload's baseline recipe, on this CPU: throughput ratio
and time-to-target ratio, paired and interleaved, on tinylm and synthetic-resnet18.

Reproduce (the default run: ~10 min on an idle 2-core CPU; --quick: 1 round of shorter runs):

    .venv/bin/python bench/levers.py [--quick] [--rounds N] [--workloads tinylm,synthetic-resnet18]
                                     [--levers micro_batches=2,threads=1] [--out DIR]

A lever is one built-in knob set to one value, everything else left at the workload's baseline
recipe (`{}` overrides: the settings a study's trial 0 runs). Every run is a real trial process
(autotune's trial launcher and engine, `common.run_config`), with a step budget: tinylm 120
steps, synthetic-resnet18 20 steps (batch 64, its baseline's); --quick 60 and 10. Measured on an
idle 2-core EPYC, --quick took 2.6 min (tinylm ~6 s a run, synthetic-resnet18 ~3 s), which puts the
default at ~9-10 min; 150 tinylm steps would take it to ~11. Before each workload's rounds, one
1-step run of it, not measured, pays for its first build (in that quick run, without it, the
first synthetic-resnet18 run, the baseline, was ~20% slower than the levers that followed it).

Each round runs the baseline and every lever once, in an order rotated between rounds, all with
the round's seed; the figures are per round and paired with that round's baseline:

- throughput ratio = lever samples/s / baseline samples/s (the engine's: the warm-up steps are
  left out, data loading is in);
- time-to-target ratio = baseline time / lever time (> 1: the lever gets there sooner). The
  target is the round's baseline's metric at the end of its budget with the slack a study gives
  it (`Metric.target_from`: 1% of a loss); a run's time to it is the real time of
  `autotune.run.projection.measured_time` (set-up + training until the first validation at or
  past the target), taken from the run's validation curve as a study does for its baseline.
  Validation runs as often as the time-to-accuracy objective asks (12 times over the budget).
  A lever that never reaches it is "missed", not given a number.

Reported: median (min-max) of the per-round ratios, the load average over the lever's runs and
the CPU's flags. synthetic-resnet18 has random labels, so its metric says nothing: throughput only
(one validation at the end). A lever that does not apply (the knob is unavailable here or its needs
are unmet by the workload: autotune's own `resolve_settings` rule, or the run ends `unsupported`)
is listed with the reason.
"""

from __future__ import annotations

import time
from typing import Any

import common

# (knob, value) in the order the issue lists them; extra settings a lever needs ride along.
LEVERS: list[tuple[str, Any, dict[str, Any]]] = [
    ("lr_schedule", "onecycle", {}),
    ("lr_schedule", "cosine", {}),
    ("micro_batches", 2, {}),
    ("matmul_precision", "medium", {}),
    ("optimizer_impl", "foreach", {}),
    ("optimizer_impl", "fused", {}),
    ("torch_compile", True, {"compile_mode": "default"}),
    ("activation_checkpointing", True, {}),
    ("structured_pruning", 0.5, {}),
    ("precision", "bf16", {}),
    ("channels_last", True, {}),
    ("threads", 1, {}),
]
# steps per run, (default, --quick); and whether the workload's metric means anything
WORKLOADS: dict[str, dict[str, Any]] = {
    "tinylm": {"steps": (120, 60), "time_to_target": True},
    "synthetic-resnet18": {
        "steps": (20, 10), "time_to_target": False,
        "why": "its labels are random (FakeData), so its metric measures nothing and has no target to reach",
    },
}
BASELINE = "baseline"


def label(knob: str, value: Any) -> str:
    return f"{knob}={str(value).lower() if isinstance(value, bool) else value}"


def applicability(workload: str, levers: list[tuple[str, Any, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str], Any]:
    """The baseline's resolved settings; for each lever that cannot run here, why (the rule
    `autotune.settings.resolve_settings` applies to `--set` (a knob unavailable on this hardware,
    a need the workload does not meet, a value out of range, or the lever being the baseline);
    and the workload's metric (autotune.metrics.Metric)."""
    from autotune.errors import UsageError
    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.settings import resolve_settings
    from autotune.workloads import load_workload

    registry, hardware = load_registry(), detect("cpu")
    loaded = load_workload(workload, registry)
    baseline = resolve_settings(registry, hardware, loaded, {})
    reasons: dict[str, str] = {}
    for knob, value, extra in levers:
        name = label(knob, value)
        try:
            settings = resolve_settings(registry, hardware, loaded, {knob: value, **extra})
        except UsageError as exc:
            reasons[name] = str(exc)
            continue
        if settings == baseline:
            reasons[name] = f"{knob}={baseline.get(knob)} is this workload's baseline here: nothing to compare"
    return baseline, reasons, loaded.primary_metric


def time_to_target(result: dict[str, Any], metric: Any, target: float) -> tuple[float | None, float | None]:
    """(real, projected) seconds to the target from a run's curve, as the study records its
    baseline's (autotune.study.objective): the first validation at or past it."""
    from autotune.run.projection import measured_time

    hit = [p for p in result.get("curve") or [] if metric.reached(p.get("value"), target)]
    if not hit:
        return None, None
    real = measured_time({"time_to_target": hit[0]["train_time"], "setup_time": result.get("setup_time")})
    return real, hit[0].get("projected")


def knob_notes(notes: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """What the lever's knob recorded in plan.notes: the keys of its settings (torch_compile's
    note is `compile_mode`) and those they prefix (`structured_pruning_counts`)."""
    return {k: v for k, v in (notes or {}).items() if any(k == key or k.startswith(key + "_") for key in keys)}


def measure(workload: str, names: list[str], configs: dict[str, dict[str, Any]], rounds: int, steps: int,
            seed: int, metric: Any, with_target: bool) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """`rounds` interleaved rounds of every configuration; per round, each run's figures and its
    ratios to that round's baseline. Levers that end `unsupported` are dropped from later rounds
    and returned with the reason."""
    from autotune.objectives import OBJECTIVES

    tta = OBJECTIVES["time-to-accuracy"]
    evals = (dict(evals_per_epoch=tta.evals_per_epoch, evals_per_budget=tta.evals_per_budget) if with_target
             else dict(eval_every_steps=steps))  # throughput only: one validation, at the end
    unsupported: dict[str, str] = {}
    out = []
    for r in range(rounds):
        order = common.rotated(names, r * len(names) // rounds)
        entry: dict[str, Any] = {"round": r, "seed": seed + r, "order": order, "runs": {}}
        for name in order:
            if name in unsupported:
                continue
            result = common.run_config(workload, configs[name], {"steps": steps}, seed=seed + r, metric=metric,
                                       **evals)
            run = {k: result.get(k) for k in (
                "status", "error", "throughput", "step_time", "metric_value", "val_samples", "setup_time",
                "train_time", "launch_wall", "machine")}
            run["load"] = common.load_average()
            run["notes"] = knob_notes(result.get("notes") or {}, list(configs[name]))
            run["curve"] = [[p.get("step"), p.get("train_time"), p.get("value")] for p in result.get("curve") or []]
            run["_result"] = result
            entry["runs"][name] = run
            if result["status"] == "unsupported":
                unsupported[name] = result.get("error") or "unsupported"
            common.log(f"  {workload} round {r + 1}/{rounds} {name:<28} {result['status']:<11} "
                       f"{common.fmt(result.get('throughput'))} samples/s, {metric.name} "
                       f"{common.fmt(result.get('metric_value'), 4)}, {run['launch_wall']:.1f} s")
        base = entry["runs"][BASELINE]
        if base["status"] != "ok":
            raise SystemExit(f"{workload}: the baseline failed in round {r + 1}: {base['status']}: {base['error']}")
        if with_target:
            entry["target"] = metric.target_from(base["metric_value"], base.get("val_samples"))
            entry["metric"] = metric.bound(entry["target"])
        for name, run in entry["runs"].items():
            result = run.pop("_result")
            if run["status"] != "ok":
                continue
            if base["throughput"] and run["throughput"]:
                run["throughput_ratio"] = run["throughput"] / base["throughput"]
            if with_target:
                run["time_to_target"], run["projected_time_to_target"] = time_to_target(
                    result, metric, entry["target"])
        if with_target:
            base_time = base["time_to_target"]
            for run in entry["runs"].values():
                if base_time and run.get("time_to_target"):
                    run["time_to_target_ratio"] = base_time / run["time_to_target"]
        out.append(entry)
    return out, unsupported


def failures(runs: list[dict[str, Any]]) -> list[str]:
    """Each distinct way the runs failed, once, with how many runs it took."""
    seen: dict[str, int] = {}
    for x in runs:
        text = f"{x['status']}: {(x['error'] or '').splitlines()[0][:200] if x['error'] else 'no error given'}"
        seen[text] = seen.get(text, 0) + 1
    return [text if n == 1 else f"{text} ({n} runs)" for text, n in seen.items()]


def summarise(name: str, rounds: list[dict[str, Any]], with_target: bool) -> dict[str, Any]:
    runs = [r["runs"][name] for r in rounds if name in r["runs"]]
    ok = [x for x in runs if x["status"] == "ok"]
    loads = [x["load"]["1min"] for x in runs]
    summary: dict[str, Any] = {
        "runs": len(runs),
        "failed": failures([x for x in runs if x["status"] != "ok"]),
        "throughput": common.stats(x["throughput"] for x in ok),
        "throughput_ratio": common.stats(x.get("throughput_ratio") for x in ok),
        "load_1min": common.stats(loads),
        # cores other processes kept busy during the run (MachineLoad): what competed with it
        "others": common.stats((x.get("machine") or {}).get("others") for x in runs),
    }
    if with_target:
        summary["time_to_target"] = common.stats(x.get("time_to_target") for x in ok)
        summary["time_to_target_ratio"] = common.stats(x.get("time_to_target_ratio") for x in ok)
        summary["missed"] = sum(x.get("time_to_target") is None for x in ok)
    return summary


def load_range(s: dict[str, Any]) -> str:
    if s["n"] == 0:
        return "-"
    return f"{s['min']:.2f}" if s["min"] == s["max"] else f"{s['min']:.2f}-{s['max']:.2f}"


def workload_markdown(report: dict[str, Any]) -> str:
    with_target = report["time_to_target"]
    headers = ["lever", "throughput ratio", "samples/s"]
    if with_target:
        headers += ["time-to-target ratio", "to target, s"]
    headers += ["load (1 min)", "others' cores", "note"]
    rows = []
    for name in [BASELINE, *report["levers"]]:
        if name in report["not_applied"]:
            rows.append([name, "-", "-", *(["-", "-"] if with_target else []), "-", "-",
                         f"does not apply: {report['not_applied'][name]}"])
            continue
        s = report["summary"][name]
        note = "; ".join(s["failed"])
        if with_target and s["missed"]:
            note = "; ".join(filter(None, [note, f"missed the target in {s['missed']} of {s['runs']} rounds"]))
        ratio = "1 (reference)" if name == BASELINE else common.fmt_stats(s["throughput_ratio"], 3, "x")
        row = [name, ratio, common.fmt_stats(s["throughput"])]
        if with_target:
            tratio = "1 (reference)" if name == BASELINE else common.fmt_stats(s["time_to_target_ratio"], 3, "x")
            row += [tratio, common.fmt_stats(s["time_to_target"])]
        rows.append([*row, load_range(s["load_1min"]), load_range(s["others"]), note or ""])
    lines = [
        f"## {report['workload']}", "",
        f"{report['rounds']} round(s), {report['steps']} steps a run, baseline recipe: "
        f"{common.short_settings(report['baseline_shown'])}.",
    ]
    if with_target:
        targets = ", ".join(r["metric"] for r in report["per_round"])
        lines.append(f"Target per round (the baseline's final value with a study's slack): {targets}.")
    else:
        lines.append(f"Throughput only: {report['why_no_target']}.")
    lines += ["", common.md_table(headers, rows), ""]
    noted = {name: notes for name, notes in report["first_notes"].items() if notes}
    if noted:
        lines.append("What the levers recorded (`plan.notes`, first round):")
        lines.append("")
        for name, notes in noted.items():
            text = "; ".join(f"{k}: {v}" for k, v in notes.items())
            lines.append(f"- `{name}`: {text[:400]}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; --quick 1)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated (default: both)")
    p.add_argument("--levers", default=None,
                   help="comma-separated knob=value labels to run (default: all), e.g. micro_batches=2,threads=1")
    p.add_argument("--tinylm-steps", type=int, default=None, help="steps a tinylm run (default 120; --quick 60)")
    p.add_argument("--resnet-steps", type=int, default=None,
                   help="steps a synthetic-resnet18 run (default 20; --quick 10)")
    args = p.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    steps_given = {"tinylm": args.tinylm_steps, "synthetic-resnet18": args.resnet_steps}
    levers = LEVERS
    if args.levers:
        wanted = [w.strip() for w in args.levers.split(",") if w.strip()]
        known = {label(k, v): (k, v, e) for k, v, e in LEVERS}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise SystemExit(f"--levers: unknown {', '.join(unknown)} (known: {', '.join(known)})")
        levers = [known[w] for w in wanted]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            raise SystemExit(f"--workloads: unknown {w!r} (known: {', '.join(WORKLOADS)})")

    out = common.results_dir(args.out)
    common.scratch_home()
    uptime_before, cpu = common.uptime_line(), common.cpu_line()
    common.log(f"{cpu}; {uptime_before}")
    started = time.perf_counter()

    reports = []
    for workload in workloads:
        plan = WORKLOADS[workload]
        steps = steps_given[workload] or plan["steps"][1 if args.quick else 0]
        baseline, not_applied, metric = applicability(workload, levers)
        names = [label(k, v) for k, v, _ in levers]
        configs = {BASELINE: {}, **{label(k, v): {k: v, **e} for k, v, e in levers}}
        runnable = [BASELINE, *(n for n in names if n not in not_applied)]
        for name, reason in not_applied.items():
            common.log(f"  {workload}: {name} does not apply: {reason}")
        common.warm_up(workload)
        t0 = time.perf_counter()
        per_round, unsupported = measure(workload, runnable, configs, rounds, steps, args.seed, metric,
                                         plan["time_to_target"])
        not_applied.update(unsupported)
        report = {
            "workload": workload, "rounds": rounds, "steps": steps, "time_to_target": plan["time_to_target"],
            "why_no_target": plan.get("why"), "levers": names, "overrides": configs,
            "baseline": baseline,
            "baseline_shown": {k: baseline[k] for k in ("batch_size", "optimizer", "learning_rate", "precision",
                                                         "threads") if k in baseline},
            "not_applied": {n: not_applied[n] for n in names if n in not_applied},
            "summary": {n: summarise(n, per_round, plan["time_to_target"]) for n in runnable
                        if n not in unsupported},
            "first_notes": {n: per_round[0]["runs"][n]["notes"] for n in names if n in per_round[0]["runs"]},
            "per_round": per_round, "wall": time.perf_counter() - t0,
        }
        common.log(f"{workload}: {report['wall']:.0f} s")
        reports.append(report)

    uptime_after = common.uptime_line()
    markdown = "\n".join([
        "# Each lever alone against the baseline recipe (CPU)", "",
        "Per round, paired with that round's baseline (same seed): throughput ratio = lever samples/s / "
        "baseline samples/s; time-to-target ratio = baseline time / lever time (real time: set-up + "
        "training to the first validation at the target). Both > 1 mean the lever helps. "
        "Median (min-max, n) over the rounds. Load: the 1-minute load average after each of the lever's runs; "
        "others' cores: the CPU other processes used during them (cores, on average), what competed with "
        "the run.", "",
        *(workload_markdown(r) for r in reports),
        f"- CPU: {cpu}",
        f"- before: `{uptime_before}`", f"- after: `{uptime_after}`",
        f"- wall time {time.perf_counter() - started:.0f} s",
    ])
    common.write_outputs(out, "levers", {
        "rounds": rounds, "seed": args.seed, "workloads": {r["workload"]: r for r in reports}, "cpu": cpu,
        "uptime_before": uptime_before, "uptime_after": uptime_after, "versions": common.versions(),
    }, markdown, None)
    print(markdown)


if __name__ == "__main__":
    main()
