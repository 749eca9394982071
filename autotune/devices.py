"""Sharing the GPUs of one machine between the trials it runs at once.

A `DevicePool` hands out GPU indices: each trial takes `per_trial` of them (one by default), runs
with `CUDA_VISIBLE_DEVICES` set to exactly those, and gives them back when it ends. Inside the
trial the GPUs are renumbered from 0, so the trial itself always uses `cuda` / `cuda:0`.
No torch here: the pool only deals in indices.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterable, Iterator, Union

from autotune.errors import UsageError


Gpu = Union[int, str]  # an index, or a UUID ("GPU-...") when CUDA_VISIBLE_DEVICES names them so


class DevicePool:
    """GPU indices shared by concurrent trials of one runner. Thread-safe.

    `acquire()` blocks until `per_trial` indices are free (or `timeout` passes, then returns None);
    `release(indices)` gives them back. GPUs go out in pool order, so runs are reproducible.
    """

    def __init__(self, indices: Iterable[Gpu], per_trial: int = 1) -> None:
        self.indices = tuple(indices)
        if len(set(self.indices)) != len(self.indices):
            raise UsageError(f"GPU indices must be distinct, got {list(self.indices)}")
        if per_trial < 1:
            raise UsageError(f"--gpus-per-trial must be at least 1, got {per_trial}")
        if per_trial > len(self.indices):
            raise UsageError(
                f"--gpus-per-trial {per_trial}: only {len(self.indices)} GPU(s) visible here"
            )
        self.per_trial = per_trial
        self._free = list(self.indices)
        self._cond = threading.Condition()

    @property
    def slots(self) -> int:
        """How many trials can hold GPUs at once."""
        return len(self.indices) // self.per_trial

    @property
    def free(self) -> tuple[Gpu, ...]:
        with self._cond:
            return tuple(self._free)

    def acquire(self, timeout: float | None = None) -> tuple[Gpu, ...] | None:
        """Take `per_trial` GPUs; None if they did not come free within `timeout` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._free) >= self.per_trial, timeout=timeout):
                return None
            self._free.sort(key=self.indices.index)
            taken, self._free = tuple(self._free[: self.per_trial]), self._free[self.per_trial:]
            return taken

    def release(self, taken: Iterable[Gpu]) -> None:
        taken = tuple(taken)
        with self._cond:
            for index in taken:
                if index not in self.indices:
                    raise ValueError(f"GPU {index} does not belong to this pool {list(self.indices)}")
                if index in self._free:
                    raise ValueError(f"GPU {index} released twice")
            self._free.extend(taken)
            self._cond.notify_all()

    @contextlib.contextmanager
    def lease(self) -> Iterator[dict[str, str]]:
        """`with pool.lease() as env:` -> {"CUDA_VISIBLE_DEVICES": "2,3"}; released on exit."""
        taken = self.acquire()
        assert taken is not None  # no timeout: acquire waits
        try:
            yield {"CUDA_VISIBLE_DEVICES": ",".join(map(str, taken))}
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
