"""Two ways of serving the same model timed against each other in one process: what an inference
study's confirmation is made of.

Batch-1 latencies of a small model are fractions of a millisecond, and on a shared machine the
same configuration served in two fresh processes a few seconds apart differed by up to 2x
(digits, fp32: 0.29 to 0.60 ms; docs/benchmarks.md), far more than the differences a study
looks for. Timed in one process, in alternating blocks (A B, then B A, ...), both sides see the
same machine at nearly the same moment, and the ratio of their medians moved by a few percent
there. Each confirmation pair is one such process; the study's interval is taken over pairs, so
a process that happens to be slow or fast as a whole still counts once.

Both served models are built first (every knob's transforms, compilation's first calls), then
timed; process-wide settings a knob sets (serve_threads) are set again before each block.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

import torch

from autotune.inference import timing
from autotune.inference.serve import build_plan, timed_side
from autotune.inference.types import InferenceOptions
from autotune.run.local import failure
from autotune.run.measure import MachineLoad, seed_everything
from autotune.run.saving import model_from

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.workloads import Workload

SIDES = ("reference", "candidate")


def compare(registry: "Registry", hardware: "Hardware", workload: "Workload", payload: dict[str, Any],
            reference: dict[str, Any], candidate: dict[str, Any], options: InferenceOptions,
            device: str | None = None) -> dict[str, Any]:
    """Serve `payload` under `reference` and under `candidate` settings, here, and time batch-1
    calls of each in `options.rounds` rounds of one block each (`options.iterations` timed
    calls after `options.warmup`), the order reversed every round.

    Returns {"status", "error", "reference": {...}, "candidate": {...}, "ratios", "machine"}:
    each side's `latency_p50` (the median of its blocks' p50s), `latency_p95`, `blocks` (each
    block's p50); `ratios` the rounds' reference p50 / candidate p50 (> 1: the candidate is
    faster). A failure is a status ("failed", "unsupported", "oom") and the error, never an
    exception."""
    dev = torch.device(device or hardware.device_type)
    load = MachineLoad()
    out: dict[str, Any] = {"status": "ok", "error": None}
    plans = []
    default_threads = torch.get_num_threads()
    try:
        seed_everything(options.seed)
        sides = []
        for settings in (reference, candidate):
            plan = build_plan(registry, hardware, workload, settings, model_from(payload, workload), dev,
                              seed=options.seed)
            plans.append(plan)
            sides.append(timed_side(plan, default_threads))
        p50s, p95s = timing.alternating(sides, options.warmup, options.iterations, options.rounds, dev)
        for i, side in enumerate(SIDES):
            out[side] = {"latency_p50": statistics.median(p50s[i]), "latency_p95": statistics.median(p95s[i]),
                         "blocks": p50s[i]}
        out["ratios"] = [r / c for r, c in zip(p50s[0], p50s[1])]
    except Exception as exc:
        status, error, tb = failure(exc)
        out.update(status=status, error=error, **({"traceback": tb} if tb else {}))
    finally:
        for plan in reversed(plans):
            for cleanup in plan.cleanups:
                cleanup()
        torch.set_num_threads(default_threads)
    out["machine"] = load.finish()
    return out
