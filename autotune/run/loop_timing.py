"""StepTimer: where the training loop's seconds go, step by step (autotune.run.engine says what
each figure means)."""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from autotune.run.measure import step_figures
from autotune.run.projection import StepClock

if TYPE_CHECKING:
    from autotune.run.types import RunResult


def prefetch_depth(loader: Any) -> int:
    """How many batches a DataLoader's workers hold ready (0 without workers)."""
    workers = int(getattr(loader, "num_workers", 0) or 0)
    return workers * int(getattr(loader, "prefetch_factor", None) or 2) if workers else 0


class StepTimer:
    """Each step's data wait and compute, the epochs' starts and ends, and the figures made of
    them: the post-warm-up step times, the StepClock's projection, and the seconds a validation
    hands to the steps after it.

    Prefetching DataLoader workers keep loading during a validation, so the first steps after
    one find their batches ready and wait less than usual: that waiting was done during the
    validation. Those catch-up steps are charged what a step typically waits, taken from the
    validation's seconds (`result.val_time`), never more than it lasted, so that train_time +
    val_time stays the time that really passed.
    """

    def __init__(self, result: "RunResult", clock: StepClock, prefetch_depth: int) -> None:
        self.result = result
        self.clock = clock
        self.prefetch_depth = prefetch_depth  # batches the workers hold ready (0 without workers)
        self.data_times: list[float] = []  # each timed step's data wait
        self.compute_times: list[float] = []
        self.timed_samples = 0
        self.recent_waits: deque[float] = deque(maxlen=8)
        self.catch_up = 0  # steps still eating batches prefetched during a validation
        self.typical_wait = 0.0
        self.credit = 0.0  # seconds of the last validation the catch-up steps may still be charged
        self.pending_data = 0.0  # the epoch start's seconds, charged to its first step

    def epoch_started(self, seconds: float) -> None:
        """The epoch's iterator took `seconds` to start (its workers' start included)."""
        self.pending_data = seconds

    def epoch_ended(self, fetch_started: float) -> float:
        """The loader ran out on a fetch begun at `fetch_started`: the seconds since, with the
        epoch's start when no step took it, counted as an epoch boundary. Returns them."""
        ended = self.pending_data + time.perf_counter() - fetch_started
        self.pending_data = 0.0
        self.clock.epoch_boundary(ended)
        return ended

    def validated(self, seconds: float) -> None:
        """A validation took `seconds`; the next steps may eat batches prefetched meanwhile."""
        if self.prefetch_depth:
            self.catch_up = self.prefetch_depth
            self.typical_wait = statistics.median(self.recent_waits) if self.recent_waits else 0.0
        self.credit = seconds

    def step(self, wait: float, compute: float, samples: int, timed: bool) -> float:
        """One step waited `wait` seconds for its batch and computed for `compute`: returns its
        data time (the epoch's start and a catch-up charge included). `timed`: the step is past
        the warm-up, and counts in the step figures."""
        epoch_start, self.pending_data = self.pending_data, 0.0
        data_time = epoch_start + wait
        self.clock.epoch_boundary(epoch_start)
        if self.catch_up:
            self.catch_up -= 1
            charge = min(max(0.0, self.typical_wait - data_time), self.credit)
            self.credit -= charge
            self.result.val_time = (self.result.val_time or 0.0) - charge
            data_time += charge
        else:
            self.recent_waits.append(data_time)
        self.clock.step(data_time - epoch_start + compute)
        if timed:
            self.data_times.append(data_time)
            self.compute_times.append(compute)
            self.timed_samples += samples
        return data_time

    def record(self, samples: int, train_time: float) -> None:
        """The timing figures into the result, for a run that trained `samples` in `train_time`."""
        result, clock = self.result, self.clock
        result.setup_time = clock.setup
        result.one_time = clock.one_time()
        result.step_time = clock.step_time
        step_figures(result, self.data_times, self.compute_times, self.timed_samples, samples, train_time)
