"""What an inference trial takes and gives back, as plain data that crosses process boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class InferenceOptions:
    """How serving is measured (autotune.inference.timing).

    Latency: `warmup` calls at batch 1, then `iterations` timed calls, one at a time. Throughput:
    `warmup` calls at the plan's batch size, then `iterations` timed ones. The metric is judged
    on the whole validation set, or its first `max_eval_batches` batches of 256 samples
    (None: all). `seed` seeds anything random (calibration order does not depend on it).
    """

    checkpoint: str = ""
    warmup: int = 5
    iterations: int = 30
    max_eval_batches: int | None = None
    seed: int = 0
    metric: str = "accuracy"
    direction: str = "maximize"
    # set for a confirmation pair: the settings served beside the trial's in the same process
    # and timed against them in `rounds` alternating blocks (autotune.inference.compare)
    reference: dict[str, Any] | None = None
    rounds: int = 6
    # set for a search trial: the unoptimized model's settings, served beside the trial's after
    # its measurements and timed against it in `paired_rounds` alternating blocks; the ratio
    # is `paired_speedup`, what the study ranks trials by (autotune.study.objective)
    paired: dict[str, Any] | None = None
    paired_rounds: int = 4

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup cannot be negative but got {self.warmup}.")
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1 but got {self.iterations}.")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1 but got {self.rounds}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InferenceResult:
    """One inference trial's measurements. Times in seconds, sizes in bytes."""

    status: str  # a RunStatus: "ok", "failed", "oom", "unsupported"
    settings: dict[str, Any]
    device: str
    error: str | None = None
    latency_p50: float | None = None  # one call at batch 1
    latency_p95: float | None = None
    throughput: float | None = None  # samples/s at the plan's batch size
    batch_size: int | None = None
    peak_memory_bytes: int | None = None  # see autotune.inference.timing.MemoryPeak
    model_bytes: int | None = None  # the served model saved (torch.save), before compilation
    compile_time: float | None = None  # the first calls of a compiled model, outside latency
    # the unoptimized model's p50 / this one's, both timed in this process in alternating blocks
    paired_speedup: float | None = None
    metric_value: float | None = None  # the primary metric on the validation set
    metrics: dict[str, float] = field(default_factory=dict)
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_samples: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    wall_time: float | None = None
    machine: dict[str, float] = field(default_factory=dict)
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
