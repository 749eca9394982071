"""Outcome: the best configuration of an autotune study with a fixed tuning budget, against the
workload's baseline recipe and against a "by the book" configuration, confirmed by repeated runs.

Reproduce (full ~12 min on a busy 2-core CPU; --quick ~3 min):

    .venv/bin/python bench/outcome.py [--quick] [--workloads digits,synthetic-resnet18] [--out DIR]

Per workload:
1. Study. A real study (StudySpec -> prepare -> StudyRunner, trials in their own processes) with
   the machine's default space (`cpu`, or `gpu` on CUDA), a fixed trial count and a timeout.
   `digits`: objective time-to-accuracy (target = baseline's final accuracy - 0.005, as autotune
   sets it). `synthetic-resnet18`: objective throughput with the accuracy constraint switched off
   (--target 1e-6): its labels are random, so accuracy means nothing there; only throughput is
   reported for it.
2. By the book: what a performance guide suggests. The largest batch that fits (on CUDA probed
   downward from the batch_size knob's maximum, 1024, with one-step runs; on CPU the knob's
   maximum, 512, which main memory holds easily for these models), the
   baseline's learning rate scaled linearly (0.01 @ 64 -> 0.01 * batch / 64, same SGD momentum 0.9),
   DataLoader workers = cores, bf16 autocast where supported (else fp16 AMP on CUDA),
   channels_last, and on CUDA cudnn.benchmark.
3. Confirmation. Baseline, by-the-book and best run R times each, alternating (the order rotates
   every round) with a fresh seed per round shared by the three, through the same launcher and
   engine as trials. Ratios are per round against that round's baseline: time-to-accuracy speedup
   = baseline seconds / config seconds, throughput ratio = config samples/s / baseline samples/s;
   reported as median (min-max) over rounds. A control arm runs with them: the baseline with
   threads=1, which shows how much of a speedup on a shared CPU comes from leaving the
   OpenMP contention of two threads alone (see bench/README.md, "Shared machines").
On a machine with CUDA the same runs again on the GPU with the `gpu` space (fp16/bf16,
cudnn.benchmark, channels_last, torch.compile searched); without one the report says "not run:
no CUDA device".
"""

from __future__ import annotations

import math
import time
from typing import Any

import common

# A control arm, not one of the compared configurations: the baseline with one intra-op thread.
# On a shared CPU, two OpenMP threads can be many times slower than one (each barrier waits for a
# descheduled thread); this row shows how much of a speedup is that effect alone.
CONTROL = "control: baseline, threads=1"
SETTINGS_SHOWN = ("batch_size", "optimizer", "learning_rate", "momentum", "weight_decay", "beta2", "precision", "workers",
                  "channels_last", "threads", "pruning", "cudnn_benchmark", "torch_compile")

# Per workload and mode: study objective, per-trial budget, trial count, study timeout (s),
# confirmation rounds and per-run budget.
PLANS: dict[str, dict[str, dict[str, Any]]] = {
    "digits": {
        "full": dict(objective="time-to-accuracy", budget={"epochs": 3}, n_trials=25, timeout=420,
                     rounds=5, confirm_budget={"epochs": 6}, target=None),
        "quick": dict(objective="time-to-accuracy", budget={"epochs": 2}, n_trials=5, timeout=75,
                      rounds=2, confirm_budget={"epochs": 3}, target=None),
    },
    # Seconds budgets long enough for many steps after the engine's 3 warm-up steps: a run of 3
    # steps or fewer reports samples / train_time with the (slow, noisy) first steps included.
    "synthetic-resnet18": {
        "full": dict(objective="throughput", budget={"seconds": 15}, n_trials=12, timeout=300,
                     rounds=3, confirm_budget={"seconds": 15}, target=1e-6),
        "quick": dict(objective="throughput", budget={"seconds": 8}, n_trials=4, timeout=45,
                      rounds=2, confirm_budget={"seconds": 8}, target=1e-6),
    },
}


def by_the_book(workload: str, device: str | None) -> dict[str, Any]:
    """The performance-guide configuration, with the largest batch that fits (probed)."""
    from autotune.hardware import detect
    from autotune.registry import load_registry

    hardware = detect(device)
    registry = load_registry()
    high = int(registry.knobs["batch_size"].params(hardware)[0].high)
    base = common.baseline_of(workload, device)
    if "bf16" in hardware.precisions:
        precision = "bf16"
    elif hardware.is_cuda and "fp16" in hardware.precisions:
        precision = "fp16"
    else:
        precision = "fp32"
    settings: dict[str, Any] = {
        "optimizer": base["optimizer"], "momentum": base.get("momentum", 0.9),
        "workers": min(hardware.cpu_count, int(registry.knobs["workers"].params(hardware)[0].high)),
        "precision": precision, "channels_last": True,
    }
    if hardware.is_cuda and "cudnn_benchmark" in registry.knobs:
        settings["cudnn_benchmark"] = True
    batch = 1 << int(math.log2(high))
    if not hardware.is_cuda:
        # Main memory (GiBs) holds the knob's largest CPU batch of these small models many times
        # over; a one-step probe of ResNet-18 at 512 costs ~40 s on a busy 2-core CPU for nothing.
        # The confirmation runs below fail loudly if it did not fit.
        common.log(f"  by the book: batch {batch} (the batch_size knob's maximum on CPU; not probed)")
        return common.resolved(workload, {**settings, "batch_size": batch,
                                          "learning_rate": base["learning_rate"] * batch / base["batch_size"]}, device)
    while batch >= 16:
        probe = {**settings, "batch_size": batch, "learning_rate": base["learning_rate"] * batch / base["batch_size"]}
        result = common.run_config(workload, probe, {"steps": 1}, device=device)
        common.log(f"  by the book: batch {batch} -> {result['status']}")
        if result["status"] != "oom":
            return common.resolved(workload, probe, device)
        batch //= 2
    raise SystemExit(f"{workload}: no batch size from {high} down to 16 fits")


def confirm(workload: str, configs: dict[str, dict[str, Any]], plan: dict[str, Any], target: float | None,
            device: str | None, seed: int) -> list[dict[str, Any]]:
    """R rounds; each round runs every configuration once, in a rotated order, with one seed."""
    from autotune.objectives import get_objective

    objective = get_objective(plan["objective"])
    tta = plan["objective"] == "time-to-accuracy"
    names = list(configs)
    rounds = []
    for r in range(plan["rounds"]):
        order = names[r % len(names):] + names[:r % len(names)]
        round_seed = seed + 1000 + r
        entry: dict[str, Any] = {"round": r, "seed": round_seed, "order": order, "runs": {}}
        for name in order:
            result = common.run_config(
                workload, configs[name], plan["confirm_budget"], seed=round_seed, device=device,
                target=target if tta else None, stop_at_target=tta, evals_per_epoch=objective.evals_per_epoch,
            )
            entry["runs"][name] = {k: result.get(k) for k in (
                "status", "error", "time_to_target", "throughput", "train_time", "val_accuracy", "launch_wall",
                "epochs", "peak_memory_bytes")}
            tt = result.get("time_to_target")
            common.log(f"  round {r + 1}/{plan['rounds']} {name:<12} "
                       + (f"time-to-target {'%.2f s' % tt if tt is not None else 'missed'}, " if tta else "")
                       + f"{common.fmt(result.get('throughput'))} samples/s")
        base = entry["runs"]["baseline"]
        for name in names:
            run = entry["runs"][name]
            if tta and base["time_to_target"] and run["time_to_target"]:
                run["tta_speedup"] = base["time_to_target"] / run["time_to_target"]
            if base["throughput"] and run["throughput"]:
                run["throughput_ratio"] = run["throughput"] / base["throughput"]
        rounds.append(entry)
    return rounds


def summarise(rounds: list[dict[str, Any]], names: list[str], tta: bool) -> dict[str, Any]:
    out = {}
    for name in names:
        runs = [r["runs"][name] for r in rounds]
        out[name] = {
            "throughput": common.stats(r["throughput"] for r in runs),
            "throughput_ratio": common.stats(r.get("throughput_ratio") for r in runs),
        }
        if tta:
            out[name]["time_to_target"] = common.stats(r["time_to_target"] for r in runs)
            out[name]["tta_speedup"] = common.stats(r.get("tta_speedup") for r in runs)
            out[name]["missed"] = sum(r["time_to_target"] is None for r in runs)
    return out


def outcome_for(workload: str, plan: dict[str, Any], device: str | None, seed: int) -> dict[str, Any]:
    from autotune.spec import StudySpec

    common.log(f"{workload} on {device or 'cpu'}: study ({plan['objective']}, {plan['n_trials']} trials, "
               f"budget {plan['budget']}, timeout {plan['timeout']} s)")
    spec = StudySpec(
        name=f"bench-outcome-{workload}-{device or 'default'}", workload=workload, objective=plan["objective"],
        n_trials=plan["n_trials"], timeout=plan["timeout"], budget=dict(plan["budget"]), target=plan["target"],
        seed=seed, confirm=0, device=device,
    )
    ran = common.run_study(spec)
    report, runner, study = ran["report"], ran["runner"], ran["study"]
    if report.get("best") is None:
        raise SystemExit(f"{workload}: the study found no completed trial: {report['counts']}")
    best = report["best"]["settings"]
    baseline = runner.baseline
    target = runner.target
    trials = [
        {"number": t.number, "state": t.state.name, "value": t.value,
         "duration": t.duration.total_seconds() if t.duration else None,
         "settings": {k: v for k, v in t.user_attrs.get("settings", {}).items() if k in SETTINGS_SHOWN},
         "reason": t.user_attrs.get("reason")}
        for t in study.get_trials(deepcopy=False)
    ]
    common.log(f"  study done in {ran['wall']:.0f} s: {report['counts']}; best trial {report['best']['number']}: "
               f"{common.short_settings(best, SETTINGS_SHOWN)}")
    book = by_the_book(workload, device)
    configs = {"baseline": baseline, "by the book": book, "autotune best": best}
    if int(baseline.get("threads", 1)) > 1 and device is None:
        configs[CONTROL] = common.resolved(workload, {**baseline, "threads": 1})
    tta = plan["objective"] == "time-to-accuracy"
    rounds = confirm(workload, configs, plan, target, device, seed)
    return {
        "workload": workload, "device": device or "cpu", "plan": plan, "space": report.get("space"),
        "target": target if tta else None, "accuracy_meaningful": tta,
        "study": {"wall": ran["wall"], "counts": report["counts"], "best_number": report["best"]["number"],
                  "best_value": report["best"]["value"], "speedup_in_search": report.get("speedup_in_search"),
                  "trials": trials},
        "configs": {name: {k: v for k, v in c.items() if k in SETTINGS_SHOWN} for name, c in configs.items()},
        "rounds": rounds,
        "summary": summarise(rounds, list(configs), tta),
    }


def markdown(results: list[dict[str, Any]], gpu_note: str | None) -> str:
    lines = ["# Outcome: autotune's best vs the baseline recipe vs by the book", ""]
    for res in results:
        tta = res["accuracy_meaningful"]
        plan = res["plan"]
        lines += [
            f"## {res['workload']} ({res['device']})",
            "",
            f"Study: objective {plan['objective']}, space `{res['space']}`, {plan['n_trials']} trials "
            f"(timeout {plan['timeout']} s), {sum(res['study']['counts'].values())} run "
            f"{res['study']['counts']} in {res['study']['wall']:.0f} s of tuning; per-trial budget {plan['budget']}."
            + (f" Target accuracy {res['target']}." if tta else
               " Labels are random: accuracy is meaningless here, so only throughput is reported "
               "(the study's accuracy constraint is off: --target 1e-6)."),
            f"Confirmation: {plan['rounds']} alternating rounds with fresh seeds, run budget {plan['confirm_budget']}"
            + (", each run stops at the target." if tta else "."),
            "",
        ]
        headers = ["configuration"]
        if tta:
            headers += ["time-to-accuracy (s)", "speedup vs baseline", "missed target"]
        headers += ["samples/s", "throughput vs baseline"]
        rows = []
        for name, s in res["summary"].items():
            row = [name]
            if tta:
                row += [common.fmt_stats(s["time_to_target"]), common.fmt_stats(s["tta_speedup"], unit="x"),
                        f"{s['missed']}/{plan['rounds']}"]
            row += [common.fmt_stats(s["throughput"]), common.fmt_stats(s["throughput_ratio"], unit="x")]
            rows.append(row)
        lines += [common.md_table(headers, rows), "", "Settings:", ""]
        lines += [f"- {name}: `{common.short_settings(c)}`" for name, c in res["configs"].items()]
        lines.append("")
    lines += ["## GPU", "", gpu_note or "Ran on CUDA: see the sections marked (cuda) above.", ""]
    return "\n".join(lines)


def figure(results: list[dict[str, Any]]) -> Any:
    plt = common.pyplot()
    panels = []
    for res in results:
        if res["accuracy_meaningful"]:
            panels.append((res, "time_to_target", "time-to-accuracy (s, lower is better)"))
        panels.append((res, "throughput", "samples/s (higher is better)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (res, metric, label) in zip(axes[0], panels):
        names = list(res["summary"])
        for i, name in enumerate(names):
            values = [r["runs"][name][metric] for r in res["rounds"]]
            got = [v for v in values if v is not None]
            ax.scatter([i] * len(got), got, color=f"C{i}", alpha=0.7)
            med = res["summary"][name][metric]["median"]
            if med is not None:
                ax.hlines(med, i - 0.3, i + 0.3, color=f"C{i}", lw=2)
            missed = len(values) - len(got)
            if missed:
                ax.annotate(f"{missed} missed", (i, 0), xycoords=("data", "axes fraction"), ha="center",
                            va="bottom", fontsize=8, color="red")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_title(f"{res['workload']} ({res['device']})", fontsize=10)
        ax.set_ylabel(label, fontsize=9)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__)
    p.add_argument("--workloads", default="digits,synthetic-resnet18", help="comma-separated (default both)")
    args = p.parse_args(argv)
    common.scratch_home()
    out = common.results_dir(args.out)
    import torch

    mode = "quick" if args.quick else "full"
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    started = time.perf_counter()
    common.warm_up()
    results = [outcome_for(w, PLANS[w][mode], None, args.seed) for w in workloads]
    if torch.cuda.is_available():
        gpu_note = None
        results += [outcome_for(w, PLANS[w][mode], "cuda", args.seed) for w in workloads]
    else:
        gpu_note = "not run: no CUDA device"
        common.log(f"GPU outcome: {gpu_note}")
    headline: dict[str, Any] = {"gpu": gpu_note or "run"}
    for res in results:
        key = f"{res['workload']}@{res['device']}"
        s = res["summary"]
        headline[key] = {
            name: ({"tta_speedup": s[name].get("tta_speedup"), "missed": s[name].get("missed")}
                   if res["accuracy_meaningful"] else {}) | {"throughput_ratio": s[name]["throughput_ratio"]}
            for name in ("by the book", "autotune best", CONTROL) if name in s
        }
    data = {"quick": args.quick, "headline": headline, "results": results, "gpu": gpu_note,
            "wall": time.perf_counter() - started, "load": common.load_average()}
    common.write_outputs(out, "outcome", data, markdown(results, gpu_note), figure(results))
    return data


if __name__ == "__main__":
    main()
