"""Small measurements shared by the engine and the loop: device sync, peak memory, sparsity,
quantiles, seeding."""

from __future__ import annotations

import math
import os
import random
import resource
import sys
import time
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from autotune.run.types import RunResult


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def step_figures(
    result: "RunResult", data_times: list[float], compute_times: list[float], timed_samples: int,
    samples: int, train_time: float,
) -> None:
    """Throughput, data wait and step times of a run from its timed (post-warm-up) steps, the
    one rule the engine's loop and a script's session both measure by (autotune.run.engine)."""
    timed = sum(data_times) + sum(compute_times)
    if timed > 0:
        result.throughput = timed_samples / timed
        result.data_wait_fraction = sum(data_times) / timed
    elif train_time > 0:
        result.throughput = samples / train_time
    result.step_time_p50 = quantile(compute_times, 0.5)
    result.step_time_p95 = quantile(compute_times, 0.95)


class MachineLoad:
    """How busy the machine was during a run: the 1-minute load average at its end, the share
    of CPU time the hypervisor gave to other guests (steal, Linux), and `others`: the cores other
    processes kept busy on average while it ran (the machine's busy CPU time less this process's
    and its reaped children's, over the wall time), from psutil. The load average counts the run
    itself and lags a minute; `others` is what competed with it."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._process = psutil.Process()
        self._start = psutil.cpu_times()
        self._own_start = self._own()
        self._wall_start = time.perf_counter()

    def _own(self) -> float:
        times = self._process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system

    @staticmethod
    def _busy(times: Any) -> float:
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    def finish(self) -> dict[str, float]:
        end = self._psutil.cpu_times()
        figures: dict[str, float] = {}
        try:
            figures["load_avg"] = os.getloadavg()[0]
        except (AttributeError, OSError):  # Windows
            pass
        total = sum(end) - sum(self._start)
        if hasattr(end, "steal") and total > 0:
            figures["steal"] = max(0.0, (end.steal - self._start.steal) / total)
        wall = time.perf_counter() - self._wall_start
        if wall > 0:
            others = self._busy(end) - self._busy(self._start) - (self._own() - self._own_start)
            figures["others"] = max(0.0, others / wall)
        return figures


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.driver_allocated_memory())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def nonzero_fraction(model: torch.nn.Module) -> float:
    """Fraction of nonzero weights over every conv and linear layer (what pruning changes)."""
    total = nonzero = 0
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            weight = module.weight.detach()
            total += weight.numel()
            nonzero += int(torch.count_nonzero(weight).item())
    return nonzero / total if total else 1.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
