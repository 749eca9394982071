"""matmul_precision: one fp32 1024x1024 @ 1024x1024 matmul under each of the knob's levels on the
CPU, set exactly as the knob sets them (its own `apply`, then its cleanups).

Reproduce (~10 s on an idle 2-core CPU):

    .venv/bin/python bench/matmul_precision.py [--rounds 5] [--size 1024] [--repeats 3]

Levels are interleaved (each round times every level once, in a rotated order) so that a change
in the machine's load hits all of them alike; a round's figure is the mean of `--repeats`
matmuls after one untimed warm-up. Printed: median and min-max milliseconds and GFLOP/s per
level, the speedup over `highest` (the median of the per-round ratios), the largest error
relative to a float64 product (whether the level changed the arithmetic), `uptime` before and
after, and the CPU's flags. Nothing is written to disk.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common

LEVELS = ("highest", "high", "medium")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--rounds", type=int, default=5)
    args.add_argument("--size", type=int, default=1024)
    args.add_argument("--repeats", type=int, default=3, help="timed matmuls per level per round")
    opts = args.parse_args()

    import torch

    from autotune.hardware import detect
    from autotune.plugins.training.matmul_precision import MatmulPrecision, cpu_bf16_flags
    from autotune.run.plan import TrainingPlan

    print(f"before: {common.uptime_line()}")
    print(f"cpu: {common.cpu_line()}; bf16 flags: {', '.join(cpu_bf16_flags()) or 'none'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n = {opts.size}, "
          f"{opts.rounds} rounds x {opts.repeats} matmuls")
    hardware = detect("cpu")
    knob = MatmulPrecision()
    reason = knob.unavailable(hardware)
    if reason:
        print(f"matmul_precision does not apply here: {reason}; timing anyway (the levels are then alike)")

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(opts.size, opts.size, generator=generator)
    b = torch.randn(opts.size, opts.size, generator=generator)
    exact = a.double() @ b.double()
    flops = 2 * opts.size**3
    times: dict[str, list[float]] = {level: [] for level in LEVELS}
    errors: dict[str, float] = {}
    notes: dict[str, str] = {}
    for round_ in range(opts.rounds):
        order = common.rotated(LEVELS, round_)
        for level in order:
            plan = TrainingPlan(device=torch.device("cpu"), hardware=hardware, workload=None)  # type: ignore[arg-type]
            knob.apply({"matmul_precision": level}, plan)
            try:
                out = a @ b  # warm-up (oneDNN builds its kernel for this shape and mode)
                errors[level] = float((out.double() - exact).abs().max() / exact.abs().max())
                notes[level] = plan.notes.get("matmul_precision", "no change (fp32)")
                started = time.perf_counter()
                for _ in range(opts.repeats):
                    a @ b
                times[level].append((time.perf_counter() - started) / opts.repeats)
            finally:
                for cleanup in plan.cleanups:
                    cleanup()

    print()
    print(f"{'level':8} {'median ms':>10} {'min-max ms':>16} {'GFLOP/s':>8} {'speedup':>10} {'rel. error':>10}  "
          "what the knob set")
    for level in LEVELS:
        values = times[level]
        ratio = statistics.median(h / t for h, t in zip(times["highest"], values))
        print(f"{level:8} {statistics.median(values) * 1e3:10.2f} "
              f"{min(values) * 1e3:7.2f}-{max(values) * 1e3:<8.2f} {flops / statistics.median(values) / 1e9:8.1f} "
              f"{ratio:9.2f}x {errors[level]:10.1e}  {notes[level]}")
    print()
    print(f"after: {common.uptime_line()}")


if __name__ == "__main__":
    main()
