"""How serving is measured: latency of single calls, throughput of batches, peak memory and the
model's size on disk.

- Calls run under `torch.inference_mode()`. Each timed call is `time.perf_counter()` around the
  call and a device sync (CUDA, MPS), so a call's time is its work done, not its launch.
- Warm-up: `warmup` untimed calls first. The very first call of a compiled model compiles
  (torch.compile, TensorRT): its time is reported apart (compile time), never in latency.
- Latency: p50 and p95 over `iterations` calls of one sample. Throughput: samples / second over
  `iterations` calls at the plan's batch size.
- Peak memory: on CUDA the allocator's peak (`torch.cuda.max_memory_allocated`, reset first).
  On the CPU, the growth of the process's resident memory (RSS, psutil) from before the served
  model is built to its highest sample while serving, sampled every 2 ms by a thread: the
  served model's own copies of the weights, compiled code, activations. The process's start-up
  (torch, the dataset) is left out; a fresh process per trial keeps trials comparable. Work a
  transform does before serving (a fine-tune) runs `paused`: its peak is left out, and so is
  what it leaves resident (optimizer state the allocator keeps).
- Model size: the bytes of `torch.save` of the served model (before compilation wraps it), or
  of its state_dict when the module cannot be pickled.
"""

from __future__ import annotations

import io
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from autotune.run.measure import quantile, sync

SAMPLE_SECONDS = 0.002


class MemoryPeak:
    """The peak memory of what runs between construction and `stop()` (see the module doc)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused = False
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            self._base = torch.cuda.memory_allocated(device)
            return
        import psutil

        self._process = psutil.Process()
        self._base = self._rss()
        self._peak = self._base
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave out what runs inside: its peak, and the memory it leaves resident (the base and
        the peak so far move up by it, so the growth before and after is measured as without it)."""
        if self.device.type == "cuda":
            peak = int(torch.cuda.max_memory_allocated(self.device))
            try:
                yield
            finally:
                self._peak = max(self._peak, peak)
                torch.cuda.reset_peak_memory_stats(self.device)
            return
        self._paused = True
        before = self._rss()
        peak = max(self._peak, before)
        try:
            yield
        finally:
            left = self._rss() - before
            self._base += left
            self._peak = peak + left
            self._paused = False

    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            if not self._paused:
                self._peak = max(self._peak, self._rss())

    def stop(self) -> int:
        """Bytes: the CUDA allocator's peak, or the RSS growth on other devices."""
        if self.device.type == "cuda":
            return max(self._peak, int(torch.cuda.max_memory_allocated(self.device)))
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, self._rss())
        return max(0, self._peak - self._base)


def timed_calls(fn: Callable[[], Any], warmup: int, iterations: int, device: torch.device) -> tuple[float, list[float]]:
    """(seconds of the first call, seconds of each of `iterations` timed calls after `warmup`
    untimed ones, the first included)."""
    with torch.inference_mode():
        started = time.perf_counter()
        fn()
        sync(device)
        first = time.perf_counter() - started
        for _ in range(max(0, warmup - 1)):
            fn()
        sync(device)
        times = []
        for _ in range(iterations):
            started = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - started)
    return first, times


def alternating(sides: list[tuple[int, Callable[[], Any]]], warmup: int, iterations: int, rounds: int,
                device: torch.device) -> tuple[list[list[float]], list[list[float]]]:
    """Time several served models against each other: `rounds` rounds of one block per side
    (`warmup` untimed calls, then `iterations` timed ones), the order reversed every round, each
    side's intra-op threads set before its block. Returns each side's blocks' p50s and p95s."""
    p50s: list[list[float]] = [[] for _ in sides]
    p95s: list[list[float]] = [[] for _ in sides]
    for round_ in range(rounds):
        order = range(len(sides)) if round_ % 2 == 0 else reversed(range(len(sides)))
        for i in order:
            threads, call = sides[i]
            torch.set_num_threads(threads)
            _, times = timed_calls(call, warmup, iterations, device)
            p50, p95 = latency(times)
            p50s[i].append(p50)
            p95s[i].append(p95)
    return p50s, p95s


def latency(times: list[float]) -> tuple[float | None, float | None]:
    """p50 and p95 of call times."""
    return quantile(times, 0.5), quantile(times, 0.95)


def throughput(times: list[float], rows: int) -> float | None:
    """Samples a second over calls of `rows` samples each."""
    total = sum(times)
    return rows * len(times) / total if total > 0 else None


def model_bytes(model: torch.nn.Module) -> int | None:
    """Bytes of the model saved with torch.save: the module, or its state_dict when the module
    cannot be pickled; None when neither can be saved."""
    for payload in (lambda: model, lambda: model.state_dict()):
        buffer = io.BytesIO()
        try:
            torch.save(payload(), buffer)
        except Exception:
            continue
        return buffer.tell()
    return None
