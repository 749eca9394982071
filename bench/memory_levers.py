"""The memory levers on this machine: throughput of `micro_batches` 1/2/4 and of
`activation_checkpointing` off/on, and the activation bytes checkpointing saves, on digits
(LeNet) and tinylm (a 2-block transformer).

    .venv/bin/python bench/memory_levers.py [--rounds 3] [--steps 40]

Each round runs every configuration once, in an order that rotates between rounds, in this
process (engine.run, fp32, seed 0, the workload's own recipe otherwise); samples/s is the
engine's (warm-up steps left out). Printed: median (min-max) samples/s per configuration, the
median of the round-by-round ratios to the untouched run, the load average before and after,
and the CPU flags that matter for these kernels. Timing claims live here, not in the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common  # noqa: E402  (bench/, the script's own folder)

CONFIGS = {
    "baseline": {},
    "micro_batches=2": {"micro_batches": 2},
    "micro_batches=4": {"micro_batches": 4},
    "activation_checkpointing": {"activation_checkpointing": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workloads", default="digits,tinylm")
    args = parser.parse_args()

    from autotune.budget import Budget
    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.run import engine
    from autotune.settings import resolve_settings
    from autotune.workloads import load_workload

    registry, hardware = load_registry(entry_points=False), detect("cpu")
    print(f"load before {os.getloadavg()[0]:.2f}; cpu: {common.cpu_line()}")
    for name in args.workloads.split(","):
        workload = load_workload(name, registry)
        rates: dict[str, list[float]] = {c: [] for c in CONFIGS}
        memory = None
        for round_ in range(args.rounds):
            order = common.rotated(list(CONFIGS), round_)
            for config in order:
                settings = resolve_settings(registry, hardware, workload, {"precision": "fp32", **CONFIGS[config]})
                result = engine.run(workload, settings, registry, hardware, Budget(steps=args.steps), device="cpu")
                if result.status != "ok":
                    raise SystemExit(f"{name} {config}: {result.status}: {result.error}")
                rates[config].append(result.throughput or 0.0)
                memory = result.notes.get("activation_checkpointing_memory", memory)
        print(f"\n{name} ({args.steps} steps, {args.rounds} rounds, batch {settings['batch_size']}):")
        for config, values in rates.items():
            ratios = [v / b for v, b in zip(values, rates["baseline"])]
            print(f"  {config:26s} {statistics.median(values):8.0f} samples/s ({min(values):.0f}-{max(values):.0f})"
                  f"  x{statistics.median(ratios):.2f} of baseline")
        print(f"  activation memory: {memory}")
    print(f"\nload after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
