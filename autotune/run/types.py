"""What a training run takes and gives back, as plain data that crosses process boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunOptions:
    """How one run is measured and when it stops early (the budget aside).

    Validation runs `evals_per_epoch` times an epoch (or every `eval_every_steps` steps), and at
    least `evals_per_budget` times over an epochs or steps budget; it bounds how finely
    time_to_target is resolved. `warmup_steps` are left out of throughput and
    step times. With `stop_at_target`, the run ends at the first validation reaching `target`.
    """

    seed: int = 0
    target: float | None = None
    # the metric `target` is in, and which way is better (autotune.metrics.Metric)
    metric: str = "accuracy"
    direction: str = "maximize"
    stop_at_target: bool = False
    eval_every_steps: int | None = None
    evals_per_epoch: int = 1
    evals_per_budget: int = 0
    warmup_steps: int = 3
    # the user's real run length over the budget (--run-epochs): what projected times scale by
    # (autotune.run.projection)
    run_scale: float = 1.0
    # Where the trained model goes when the run ends well (autotune.run.saving; the first
    # process of a data-parallel run writes it): `trial run --save-model PATH`
    save_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalPoint:
    """One intermediate validation, passed to `on_eval` (Optuna reports and pruning use it)."""

    index: int
    step: int
    epoch: float
    train_time: float
    value: float | None  # the primary metric's value
    metrics: dict[str, float] = field(default_factory=dict)
    val_loss: float | None = None
    val_accuracy: float | None = None
    # projected seconds to have trained this far (autotune.run.projection): the objective's
    # units for time-to-accuracy, so a pruned trial's last report reads as a lower bound
    projected: float | None = None


@dataclass
class Progress:
    """Live progress, passed to `on_progress` about twice a second."""

    step: int
    total_steps: int | None
    epoch: float
    train_time: float
    fraction: float
    samples_per_s: float
    peak_memory_bytes: int


@dataclass
class RunResult:
    status: str  # a RunStatus: "ok", "pruned", "diverged", "failed", "oom", "unsupported"
    settings: dict[str, Any]
    device: str
    error: str | None = None
    throughput: float | None = None
    step_time_p50: float | None = None
    step_time_p95: float | None = None
    data_wait_fraction: float | None = None
    peak_memory_bytes: int | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    metric_value: float | None = None  # the primary metric (RunOptions.metric) at the last validation
    metrics: dict[str, float] = field(default_factory=dict)  # everything the last validation measured
    val_samples: int | None = None  # the validation set's size (None: an iterable dataset)
    notes: dict[str, Any] = field(default_factory=dict)  # what the knobs recorded (TrainingPlan.notes)
    rates: dict[str, float] = field(default_factory=dict)  # throughput in the workload's units: tokens_per_s
    nonzero_fraction: float | None = None
    wall_time: float | None = None
    train_time: float | None = None
    val_time: float | None = None
    time_to_target: float | None = None  # training seconds until the target was first reached
    # time to target as measured factors (autotune.run.projection): the time-to-accuracy value
    projected_time_to_target: float | None = None
    setup_time: float | None = None  # model build, knob transforms, optimizer, loaders
    one_time: dict[str, float] = field(default_factory=dict)  # {"setup", "warmup"} seconds
    step_time: float | None = None  # the steady median step, data wait included
    target: float | None = None
    machine: dict[str, float] = field(default_factory=dict)  # {"load_avg", "steal", "others"} (MachineLoad)
    steps: int = 0
    samples: int = 0
    epochs: float = 0.0
    curve: list[EvalPoint] = field(default_factory=list)
    traceback: str | None = None
    saved_model: dict[str, Any] | None = None  # what RunOptions.save_model wrote (autotune.run.saving)
    # settings the run's loop cannot take, whatever their value, and why (a framework adapter's,
    # autotune.adapters): a study leaves them out of its search after the baseline declares them
    refuses: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "pruned")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunResult":
        data = dict(data)
        data["curve"] = [EvalPoint(**p) for p in data.get("curve", [])]
        return cls(**data)
