"""structured_pruning's speed-up: synthetic-resnet18 (CIFAR-shaped 3x32x32, ResNet-18) step time
with no pruning and with half the channels removed, measured the way a study measures a trial.

Reproduce (~2 min on a quiet 2-core CPU; --quick: 3 rounds):

    .venv/bin/python bench/structured_pruning.py [--quick] [--rounds N] [--out DIR]

Each round runs both configurations back to back (interleaved, the order alternating between
rounds, so a change in the machine's load hits both), each as a real trial in its own process
(autotune's trial launcher): batch 64, fp32, SGD, a budget of --steps optimizer steps. The figure
is the engine's steady step time (the median step after the warm-up, data wait included) and the
speed-up per round is step_time(0) / step_time(fraction); the report gives its median and min-max
over the rounds, with the parameters and MACs a sample from the trial's notes, the load average
before and after, and the CPU's flags. The issue's bar: at least 1.5x at 0.5.
"""

from __future__ import annotations

from typing import Any

import common

WORKLOAD = "synthetic-resnet18"


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--rounds", type=int, default=None, help="rounds of both configurations (default 5; --quick 3)")
    p.add_argument("--steps", type=int, default=30, help="optimizer steps a run (default 30)")
    p.add_argument("--fraction", type=float, default=0.5, help="structured_pruning value compared with 0 (default 0.5)")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    out = common.results_dir(args.out)
    common.scratch_home()
    uptime_before, cpu = common.uptime_line(), common.cpu_line()
    common.log(f"{cpu}; {uptime_before}")
    common.warm_up(WORKLOAD)

    fractions = (0.0, args.fraction)
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        for fraction in fractions if r % 2 == 0 else fractions[::-1]:
            overrides = {"structured_pruning": fraction, "batch_size": args.batch_size}
            result = common.run_config(WORKLOAD, overrides, {"steps": args.steps}, seed=args.seed + r)
            if result["status"] != "ok":
                raise SystemExit(f"structured_pruning={fraction}: {result['status']}: {result['error']}")
            counts = (result.get("notes") or {}).get("structured_pruning_counts")
            runs.append({"round": r, "fraction": fraction, "step_time": result["step_time"],
                         "throughput": result["throughput"], "counts": counts, "load": common.load_average()})
            common.log(f"round {r + 1}/{rounds} structured_pruning={fraction}: "
                       f"{result['step_time'] * 1000:.1f} ms/step, {result['throughput']:.0f} samples/s")

    def of(r: int, fraction: float) -> dict[str, Any]:
        return next(x for x in runs if x["round"] == r and x["fraction"] == fraction)

    ratios = [of(r, 0.0)["step_time"] / of(r, args.fraction)["step_time"] for r in range(rounds)]
    speedup = common.stats(ratios)
    times = {f: common.stats(x["step_time"] * 1000 for x in runs if x["fraction"] == f) for f in fractions}
    counts = of(0, args.fraction)["counts"] or {}
    params, macs = counts.get("parameters", [None, None]), counts.get("macs_per_sample", [None, None])
    uptime_after = common.uptime_line()
    verdict = "meets" if speedup["median"] >= 1.5 else "misses"
    markdown = "\n".join([
        f"# structured_pruning: {WORKLOAD} step time, 0 vs {args.fraction}", "",
        f"Speed-up (step_time at 0 / at {args.fraction}), per interleaved round: "
        f"**{common.fmt_stats(speedup, 3, 'x')}** ({verdict} the issue's 1.5x).", "",
        common.md_table(
            ["structured_pruning", "step time ms, median (min-max)", "parameters", "MACs a sample"],
            [(f, common.fmt_stats(times[f]), common.fmt(params[i]), common.fmt(macs[i]))
             for i, f in enumerate(fractions)],
        ), "",
        f"- {rounds} rounds x 2 runs, {args.steps} steps each, batch {args.batch_size}, fp32, one trial process a run",
        f"- CPU: {cpu}",
        f"- before: `{uptime_before}`", f"- after: `{uptime_after}`",
    ])
    common.write_outputs(out, "structured_pruning", {
        "workload": WORKLOAD, "fraction": args.fraction, "rounds": rounds, "steps": args.steps,
        "batch_size": args.batch_size, "speedup": speedup, "ratios": ratios, "step_time_ms": times,
        "parameters": params, "macs_per_sample": macs, "runs": runs, "cpu": cpu,
        "uptime_before": uptime_before, "uptime_after": uptime_after, "versions": common.versions(),
    }, markdown, None)
    print(markdown)


if __name__ == "__main__":
    main()
