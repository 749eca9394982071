"""Data parallelism: throughput of one process against DistributedDataParallel (and DataParallel
on CUDA), measured side by side through the launcher a study uses.

Reproduce (~2 min on a 2-core CPU; --quick ~1 min):

    .venv/bin/python bench/data_parallel.py [--quick] [--out DIR] [--workload W] [--rounds N]

Each round runs every mode once, in an order that rotates between rounds, with the same settings
apart from `data_parallel` (the global batch stays the same: each of N processes trains on
batch / N); the rounds are bench/outcome.py's `confirm`, with one process as the baseline. Figures per mode: the engine's samples/s (every process's samples, warm-up steps
excluded), and the wall time of the whole trial from the launch call, which includes starting
the processes; ratios are taken round by round against `none` and summarised as median (min-max).

Modes: on CPU `none` and `ddp` with 2..cores processes (gloo), which split the cores between them;
on a machine with 2+ CUDA GPUs `none` (one GPU), `dp` and `ddp` over every visible GPU (NCCL).
"""

from __future__ import annotations

from typing import Any

import common
from outcome import confirm, summarise

PLANS = {
    "synthetic-resnet18": {"full": {"steps": 40}, "quick": {"steps": 20}},
    "digits": {"full": {"epochs": 3}, "quick": {"epochs": 2}},
}


ONE_PROCESS = "baseline"  # outcome.confirm pairs every mode with the configuration of this name


def modes(device: str, cores: int, gpus: int) -> dict[str, dict[str, Any]]:
    if device == "cuda":
        if gpus < 2:
            return {}
        return {ONE_PROCESS: {"data_parallel": "none"}, "dp": {"data_parallel": "dp"},
                "ddp": {"data_parallel": "ddp"}}
    chosen = {ONE_PROCESS: {"data_parallel": "none"}}
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
    configs = {name: {"batch_size": args.batch_size, **settings} for name, settings in chosen.items()}
    plan = {"objective": "throughput", "rounds": rounds, "confirm_budget": budget}
    ran = confirm(args.workload, configs, plan, target=None, device=None, seed=args.seed)
    names = list(chosen)
    summary = summarise(ran, names, tta=False)
    for name in names:
        runs = [r["runs"][name] for r in ran]
        summary[name].update(
            settings=chosen[name],
            wall=common.stats(r["launch_wall"] for r in runs),
            val_accuracy=common.stats(r["val_accuracy"] for r in runs),
            statuses=[r["status"] for r in runs],
        )
    label = {ONE_PROCESS: "none (one process)"}
    rows = [
        [label.get(name, name), common.fmt_stats(s["throughput"]), common.fmt_stats(s["throughput_ratio"], unit="x"),
         common.fmt_stats(s["wall"], unit=" s"), common.fmt_stats(s["val_accuracy"])]
        for name, s in summary.items()
    ]
    device = hardware.device_name if hardware.is_cuda else f"{hardware.cpu_name}, {hardware.cpu_count} cores"
    markdown = "\n\n".join([
        f"# Data parallelism on {args.workload} ({hardware.device_type}: {device})",
        f"Global batch {args.batch_size}, budget {budget}, {rounds} rounds, modes alternated. "
        "samples/s counts every process's samples and excludes warm-up; wall is the whole trial "
        "from the launch call, process start-up included.",
        common.md_table(["mode", "samples/s", "vs one process (paired)", "trial wall", "val accuracy"], rows),
        f"Load: {common.uptime_line()}",
    ])
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([label.get(n, n) for n in summary], [s["throughput"]["median"] or 0 for s in summary.values()])
    ax.set_ylabel("samples/s (median)")
    ax.set_title(f"data parallelism, {args.workload}")
    common.write_outputs(
        out, "data_parallel",
        {"workload": args.workload, "budget": budget, "rounds": rounds, "batch_size": args.batch_size,
         "hardware": hardware.to_dict(), "modes": summary, "runs": ran,
         "headline": {name: s["throughput_ratio"] for name, s in summary.items() if name != ONE_PROCESS}},
        markdown, fig,
    )
    print(markdown)


if __name__ == "__main__":
    main()
