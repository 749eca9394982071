"""Data parallelism: throughput of one process against DistributedDataParallel (and DataParallel
on CUDA), measured side by side through the launcher a study uses.

Reproduce (~2 min on a 2-core CPU; --quick ~1 min):

    .venv/bin/python bench/data_parallel.py [--quick] [--out DIR] [--workload W] [--rounds N]

Each round runs every mode once, in an order that rotates between rounds, with the same settings
apart from `data_parallel` (the global batch stays the same: each of N processes trains on
batch / N). Figures per mode: the engine's samples/s (every process's samples, warm-up steps
excluded), and the wall time of the whole trial from the launch call, which includes starting
the processes; ratios are taken round by round against `none` and summarised as median (min-max).

Modes: on CPU `none` and `ddp` with 2..cores processes (gloo), which split the cores between them;
on a machine with 2+ CUDA GPUs `none` (one GPU), `dp` and `ddp` over every visible GPU (NCCL).
"""

from __future__ import annotations

from typing import Any

import common

PLANS = {
    "synthetic-resnet18": {"full": {"steps": 40}, "quick": {"steps": 20}},
    "digits": {"full": {"epochs": 3}, "quick": {"epochs": 2}},
}


def modes(device: str, cores: int, gpus: int) -> dict[str, dict[str, Any]]:
    if device == "cuda":
        if gpus < 2:
            return {}
        return {"none": {"data_parallel": "none"}, "dp": {"data_parallel": "dp"}, "ddp": {"data_parallel": "ddp"}}
    chosen = {"none": {"data_parallel": "none"}}
    for processes in range(2, max(2, cores) + 1):
        chosen[f"ddp x{processes}"] = {"data_parallel": "ddp", "data_parallel_processes": processes}
    return chosen if cores >= 2 else {}


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--workload", default="synthetic-resnet18", choices=sorted(PLANS))
    p.add_argument("--rounds", type=int, default=None, help="rounds of every mode (default 3; --quick 2)")
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    common.scratch_home()
    out = common.results_dir(args.out)
    from autotune.hardware import detect

    hardware = detect()
    chosen = modes(hardware.device_type, hardware.cpu_count, hardware.device_count)
    rounds = args.rounds or (2 if args.quick else 3)
    budget = PLANS[args.workload]["quick" if args.quick else "full"]
    if not chosen:
        why = f"needs 2+ CPU cores or 2+ CUDA GPUs ({hardware.device_type}, {hardware.cpu_count} cores)"
        common.write_outputs(out, "data_parallel", {"skipped": why}, f"Not run: {why}.", common.not_run_figure(why))
        return
    common.warm_up(args.workload)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    names = list(chosen)
    for round_index in range(rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            overrides = {"batch_size": args.batch_size, **chosen[name]}
            result = common.run_config(args.workload, overrides, budget, seed=args.seed + round_index)
            common.log(
                f"round {round_index + 1}/{rounds} {name}: {result['status']} "
                f"{common.fmt(result.get('throughput'))} samples/s, wall {common.fmt(result['launch_wall'])} s"
            )
            runs[name].append(result)

    def ratio(name: str, key: str, invert: bool = False) -> dict[str, Any]:
        values = []
        for mine, base in zip(runs[name], runs["none"]):
            a, b = mine.get(key), base.get(key)
            values.append(None if not a or not b else (b / a if invert else a / b))
        return common.stats(values)

    summary = {
        name: {
            "settings": chosen[name],
            "throughput": common.stats(r.get("throughput") for r in results),
            "wall": common.stats(r["launch_wall"] for r in results),
            "val_accuracy": common.stats(r.get("val_accuracy") for r in results),
            "throughput_vs_none": ratio(name, "throughput"),
            "statuses": [r["status"] for r in results],
        }
        for name, results in runs.items()
    }
    rows = [
        [name, common.fmt_stats(s["throughput"]), common.fmt_stats(s["throughput_vs_none"], unit="x"),
         common.fmt_stats(s["wall"], unit=" s"), common.fmt_stats(s["val_accuracy"])]
        for name, s in summary.items()
    ]
    device = hardware.device_name if hardware.is_cuda else f"{hardware.cpu_name}, {hardware.cpu_count} cores"
    markdown = "\n\n".join([
        f"# Data parallelism on {args.workload} ({hardware.device_type}: {device})",
        f"Global batch {args.batch_size}, budget {budget}, {rounds} rounds, modes alternated. "
        "samples/s counts every process's samples and excludes warm-up; wall is the whole trial "
        "from the launch call, process start-up included.",
        common.md_table(["mode", "samples/s", "vs none (paired)", "trial wall", "val accuracy"], rows),
        f"Load: {common.uptime_line()}",
    ])
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(list(summary), [s["throughput"]["median"] or 0 for s in summary.values()])
    ax.set_ylabel("samples/s (median)")
    ax.set_title(f"data parallelism, {args.workload}")
    common.write_outputs(
        out, "data_parallel",
        {"workload": args.workload, "budget": budget, "rounds": rounds, "batch_size": args.batch_size,
         "hardware": hardware.to_dict(), "modes": summary, "runs": runs,
         "headline": {name: s["throughput_vs_none"] for name, s in summary.items() if name != "none"}},
        markdown, fig,
    )
    print(markdown)


if __name__ == "__main__":
    main()
