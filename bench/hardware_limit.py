"""The hardware limit: the machine's peak matmul throughput (fp32, bf16) measured in this run, and
the training FLOP/s the best configurations achieve as a fraction of it.

Reproduce (~1 min on a busy 2-core CPU):

    .venv/bin/python bench/hardware_limit.py [--quick] [--out DIR] [--outcome PATH/outcome.json]

- Peak: large square torch.matmul (n = 2048 and 4096; --quick: 2048), best of several timed
  repetitions after a warm-up, 2*n^3 FLOPs each, in fp32 and bf16, on the CPU with 1..cores
  threads (on a shared machine one thread can beat two); on CUDA as well when there is a GPU.
- Model FLOPs per training sample: torch.utils.flop_counter.FlopCounterMode over one forward +
  backward of the workload's model on a batch of 32, divided by 32 (matmul/convolution FLOPs; the
  optimizer step and elementwise ops are not counted, so achieved figures are slight
  underestimates).
- Achieved: that x the samples/s the engine measures for the configuration, re-measured in this
  run right after the peak (same machine load) through autotune's launcher. Configurations: the
  baseline recipe and the autotune best of each workload from outcome.json (this results folder's,
  or the latest in bench/results/, or --outcome). Fraction = achieved / peak of the precision the
  configuration trains in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import common

PLANS = {
    "digits": {"full": {"epochs": 1}, "quick": {"epochs": 1}},
    "synthetic-resnet18": {"full": {"seconds": 15}, "quick": {"seconds": 8}},
}


def peak_matmul(device: str, sizes: list[int], repeats: int) -> dict[str, Any]:
    """Best FLOP/s of an n x n matmul over sizes, repetitions and (CPU) thread counts.

    Thread counts 1..cores are all tried: on a shared machine, 2 OpenMP threads can be slower
    than 1 (each barrier waits for a descheduled thread), and the peak is what can be reached.
    """
    import torch

    out: dict[str, Any] = {}
    default_threads = torch.get_num_threads()
    thread_counts = list(range(1, default_threads + 1)) if device == "cpu" else [default_threads]
    try:
        for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            best = 0.0
            detail = {}
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for n in sizes:
                    a = torch.randn(n, n, device=device).to(dtype)
                    b = torch.randn(n, n, device=device).to(dtype)
                    torch.matmul(a, b)  # warm-up
                    if device == "cuda":
                        torch.cuda.synchronize()
                    size_best = 0.0
                    for _ in range(repeats if n <= 2048 else max(2, repeats // 3)):
                        t0 = time.perf_counter()
                        torch.matmul(a, b)
                        if device == "cuda":
                            torch.cuda.synchronize()
                        size_best = max(size_best, 2 * n**3 / (time.perf_counter() - t0))
                    detail[f"threads={threads} n={n}"] = size_best
                    best = max(best, size_best)
            out[dtype_name] = {"flops": best, "detail": detail}
            common.log(f"  peak matmul {device} {dtype_name}: {best / 1e9:.1f} GFLOP/s "
                       f"({', '.join(f'{k}: {v / 1e9:.1f}' for k, v in detail.items())})")
    finally:
        torch.set_num_threads(default_threads)
    out["threads"] = thread_counts
    return out


def flops_per_sample(workload_name: str) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from autotune.registry import load_registry
    from autotune.workloads import load_workload

    workload = load_workload(workload_name, load_registry())
    model = workload.model_fn()
    model.train()
    batch = 32
    inputs = torch.randn(batch, *workload.input_shape)
    targets = torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        loss = workload.loss_fn(model(inputs), targets)
        loss.backward()
    return counter.get_total_flops() / batch


def find_outcome(out: Path, given: Path | None) -> Path | None:
    if given is not None:
        return given
    if (out / "outcome.json").exists():
        return out / "outcome.json"
    found = sorted(common.RESULTS.glob("*/outcome.json"))
    return found[-1] if found else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__)
    p.add_argument("--outcome", type=Path, default=None, help="outcome.json whose best configurations to measure")
    args = p.parse_args(argv)
    common.scratch_home()
    out = common.results_dir(args.out)
    import torch

    mode = "quick" if args.quick else "full"
    sizes = [2048] if args.quick else [2048, 4096]
    common.log("peak matmul throughput")
    peaks = {"cpu": peak_matmul("cpu", sizes, 8)}
    if torch.cuda.is_available():
        peaks["cuda"] = peak_matmul("cuda", [4096, 8192], 10)
    outcome_path = find_outcome(out, args.outcome)
    bests: dict[str, dict[str, Any]] = {}
    if outcome_path is not None:
        outcome = json.loads(outcome_path.read_text())
        for res in outcome["results"]:
            if res["device"] == "cpu":
                bests[res["workload"]] = res["configs"]["autotune best"]
        common.log(f"best configurations from {outcome_path}")
    else:
        common.log("no outcome.json found: measuring the baseline recipes only")
    common.warm_up()
    rows = []
    for workload, budgets in PLANS.items():
        per_sample = flops_per_sample(workload)
        configs = {"baseline": common.baseline_of(workload)}
        if workload in bests:
            configs["autotune best"] = bests[workload]
        for name, settings in configs.items():
            result = common.run_config(workload, settings, budgets[mode])
            throughput = result.get("throughput")
            precision = settings.get("precision", "fp32")
            peak = peaks["cpu"].get(precision, peaks["cpu"]["fp32"])["flops"]
            achieved = per_sample * throughput if throughput else None
            rows.append({
                "workload": workload, "config": name, "settings": settings, "precision": precision,
                "flops_per_sample": per_sample, "throughput": throughput, "achieved_flops": achieved,
                "peak_flops": peak, "fraction": achieved / peak if achieved else None,
                "fraction_of_fp32_peak": achieved / peaks["cpu"]["fp32"]["flops"] if achieved else None,
                "status": result["status"],
            })
            common.log(f"  {workload} {name}: {per_sample / 1e6:.1f} MFLOP/sample x {common.fmt(throughput)} samples/s "
                       f"= {(achieved or 0) / 1e9:.2f} GFLOP/s = {100 * (rows[-1]['fraction'] or 0):.2f}% of {precision} peak")
    headline = {
        "peak_fp32_gflops": peaks["cpu"]["fp32"]["flops"] / 1e9,
        "peak_bf16_gflops": peaks["cpu"]["bf16"]["flops"] / 1e9,
        **{f"{r['workload']}/{r['config']}": {"achieved_gflops": (r["achieved_flops"] or 0) / 1e9,
                                              "fraction": r["fraction"], "precision": r["precision"]} for r in rows},
    }
    data = {"quick": args.quick, "headline": headline, "peaks": peaks, "rows": rows,
            "outcome_source": str(outcome_path) if outcome_path else None, "load": common.load_average()}
    common.write_outputs(out, "hardware_limit", data, markdown(data), figure(data))
    return data


def markdown(data: dict[str, Any]) -> str:
    cpu = data["peaks"]["cpu"]
    lines = [
        "# The hardware limit",
        "",
        f"Peak matmul on this CPU (best over {', '.join(map(str, cpu['threads']))} threads, sizes and repetitions), "
        f"measured in this run: "
        f"fp32 **{cpu['fp32']['flops'] / 1e9:.1f} GFLOP/s**, bf16 **{cpu['bf16']['flops'] / 1e9:.1f} GFLOP/s**.",
    ]
    if "cuda" in data["peaks"]:
        g = data["peaks"]["cuda"]
        lines.append(f"CUDA: fp32 {g['fp32']['flops'] / 1e12:.1f} TFLOP/s, bf16 {g['bf16']['flops'] / 1e12:.1f} TFLOP/s.")
    lines += [
        f"Best configurations from: {data['outcome_source'] or 'none (baseline only)'}.",
        "",
        common.md_table(
            ["workload", "configuration", "precision", "MFLOP per sample (fwd+bwd)", "samples/s",
             "achieved GFLOP/s", "fraction of peak"],
            [[r["workload"], r["config"], r["precision"], f"{r['flops_per_sample'] / 1e6:.2f}", common.fmt(r["throughput"]),
              f"{(r['achieved_flops'] or 0) / 1e9:.2f}", f"{100 * (r['fraction'] or 0):.2f}%"] for r in data["rows"]],
        ),
    ]
    return "\n".join(lines)


def figure(data: dict[str, Any]) -> Any:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [f"{r['workload']}\n{r['config']} ({r['precision']})" for r in data["rows"]]
    values = [(r["achieved_flops"] or 0) / 1e9 for r in data["rows"]]
    ax.bar(range(len(values)), values, color="C0")
    for i, r in enumerate(data["rows"]):
        ax.annotate(f"{100 * (r['fraction'] or 0):.2f}%", (i, values[i]), ha="center", va="bottom", fontsize=8)
    cpu = data["peaks"]["cpu"]
    ax.axhline(cpu["fp32"]["flops"] / 1e9, color="C1", ls="--", label="fp32 matmul peak")
    ax.axhline(cpu["bf16"]["flops"] / 1e9, color="C2", ls="--", label="bf16 matmul peak")
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("GFLOP/s (log)")
    ax.set_title("achieved training FLOP/s vs peak matmul (annotated: fraction of peak)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
