"""Sharing the GPUs of one machine between the trials it runs at once.

A `DevicePool` hands out GPU indices: each trial takes `per_trial` of them (one by default), runs
with `CUDA_VISIBLE_DEVICES` set to exactly those, and gives them back when it ends. Inside the
trial the GPUs are renumbered from 0, so the trial itself always uses `cuda` / `cuda:0`.
No torch here: the pool only deals in indices.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING, Iterable, Iterator, Union

from autotune.errors import UsageError

if TYPE_CHECKING:
    from autotune.hardware import Hardware


Gpu = Union[int, str]  # an index, or a UUID ("GPU-...") when CUDA_VISIBLE_DEVICES names them so


class DevicePool:
    """The GPUs (or, on CPU, just the slots) shared by the trials one process runs at once.

    Each lease takes `per_trial` GPUs and runs its trial with CUDA_VISIBLE_DEVICES naming exactly
    those. `capacity` caps how many trials hold a lease at once (the daemon's --workers); it
    defaults to one trial per group of `per_trial` GPUs, and with more workers than that, GPUs are
    shared, least-loaded first. With no GPUs the pool only caps concurrency. Thread-safe; GPUs go
    out in pool order among equals, so runs are reproducible.
    """

    def __init__(self, indices: Iterable[Gpu], per_trial: int = 1, capacity: int | None = None) -> None:
        self.indices = tuple(indices)
        if len(set(self.indices)) != len(self.indices):
            raise UsageError(f"GPU indices must be distinct, got {list(self.indices)}")
        if per_trial < 1:
            raise UsageError(f"--gpus-per-trial must be at least 1, got {per_trial}")
        if self.indices and per_trial > len(self.indices):
            raise UsageError(
                f"--gpus-per-trial {per_trial}: only {len(self.indices)} GPU(s) visible here"
            )
        if capacity is not None and capacity < 1:
            raise ValueError(f"capacity must be at least 1 but got {capacity}.")
        self.per_trial = per_trial if self.indices else 0
        groups = len(self.indices) // per_trial if self.indices else 1
        self.capacity = capacity if capacity is not None else groups
        self._exclusive = self.capacity <= groups  # every lease gets GPUs of its own
        self._load = {index: 0 for index in self.indices}
        self._active = 0
        self._cond = threading.Condition()

    @classmethod
    def for_cuda(cls, capacity: int | None = None, per_trial: int = 1) -> "DevicePool":
        """The GPUs this process may use (as CUDA_VISIBLE_DEVICES names them), or none."""
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return cls(visible_gpus(count, os.environ.get("CUDA_VISIBLE_DEVICES")), per_trial, capacity)

    @property
    def slots(self) -> int:
        """How many trials can hold GPUs of their own at once."""
        return len(self.indices) // self.per_trial if self.indices else self.capacity

    @property
    def free(self) -> tuple[Gpu, ...]:
        with self._cond:
            return tuple(i for i in self.indices if self._load[i] == 0)

    @property
    def in_use(self) -> int:
        with self._cond:
            return self._active

    def _can_take(self) -> bool:
        if self._active >= self.capacity:
            return False
        free = sum(1 for i in self.indices if self._load[i] == 0)
        return not self._exclusive or free >= self.per_trial

    def acquire(self, timeout: float | None = None) -> tuple[Gpu, ...] | None:
        """Take a slot and its GPUs (() on CPU); None if none came free within `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(self._can_take, timeout=timeout):
                return None
            order = sorted(self.indices, key=lambda i: (self._load[i], self.indices.index(i)))
            taken = tuple(sorted(order[: self.per_trial], key=self.indices.index))
            for index in taken:
                self._load[index] += 1
            self._active += 1
            return taken

    def release(self, taken: Iterable[Gpu]) -> None:
        taken = tuple(taken)
        with self._cond:
            for index in taken:
                if index not in self._load:
                    raise ValueError(f"GPU {index} does not belong to this pool {list(self.indices)}")
                if self._load[index] == 0:
                    raise ValueError(f"GPU {index} released twice")
            for index in taken:
                self._load[index] -= 1
            self._active -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def lease(self) -> Iterator[dict[str, str]]:
        """`with pool.lease() as env:` -> {"CUDA_VISIBLE_DEVICES": "2,3"} ({} on CPU); released on exit."""
        taken = self.acquire()
        assert taken is not None  # no timeout: acquire waits
        try:
            yield {"CUDA_VISIBLE_DEVICES": ",".join(map(str, taken))} if taken else {}
        finally:
            self.release(taken)


def visible_gpus(device_count: int, cuda_visible_devices: str | None = None) -> tuple[Gpu, ...]:
    """The GPUs to hand out: those CUDA_VISIBLE_DEVICES already names, else 0..device_count-1.

    Values are what a child's CUDA_VISIBLE_DEVICES must name, so an existing restriction
    ("4,5", or UUIDs) is kept as-is rather than renumbered from 0.
    """
    if cuda_visible_devices is not None and cuda_visible_devices.strip():
        parts = [p.strip() for p in cuda_visible_devices.split(",") if p.strip()]
        # CUDA stops at the first invalid entry (a negative index hides everything after it)
        kept: list[Gpu] = []
        for part in parts:
            if part.lstrip("-").isdigit():
                if int(part) < 0:
                    break
                kept.append(int(part))
            else:
                kept.append(part)
        return tuple(kept[:device_count])
    return tuple(range(device_count))


def trial_pool(
    gpu_count: int,
    workers: int | None,
    gpus_per_trial: int | None,
    cuda_visible_devices: str | None = None,
) -> tuple[DevicePool | None, int]:
    """The pool a runner leases its trials' GPUs from, and how many trials it runs at once.

    With GPUs each trial gets `gpus_per_trial` (default 1) of its own, and by default as many
    trials run at once as there are groups: one trial per GPU. Without GPUs there is no pool and
    `workers` (default 1) trials share the CPU. Raises UsageError for a count that cannot fit.
    """
    if gpu_count <= 0:
        if gpus_per_trial is not None:
            raise UsageError(f"--gpus-per-trial {gpus_per_trial}: no CUDA GPUs here")
        return None, workers or 1
    gpus = visible_gpus(gpu_count, cuda_visible_devices)
    pool = DevicePool(gpus, per_trial=gpus_per_trial or 1)
    if workers is None:
        return pool, pool.slots
    if workers > pool.slots:
        raise UsageError(
            f"--workers {workers}: {len(gpus)} GPU(s) at {pool.per_trial} per trial fit only "
            f"{pool.slots} trial(s) at once"
        )
    return pool, workers


def trial_pool_for(
    hardware: "Hardware", workers: int | None, gpus_per_trial: int | None
) -> tuple[DevicePool | None, int]:
    """trial_pool for the hardware a study runs on: its CUDA GPUs, as CUDA_VISIBLE_DEVICES
    names them, or none when the study runs on CPU or MPS."""
    return trial_pool(
        hardware.device_count if hardware.is_cuda else 0, workers, gpus_per_trial,
        os.environ.get("CUDA_VISIBLE_DEVICES"),
    )
