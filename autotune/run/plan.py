"""The TrainingPlan: everything the engine builds one run from, as knobs leave it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from autotune.run.loop_events import Event

# A note a knob leaves in `notes` when a micro-batch of that many samples, or more, ran out of
# memory under the run's settings (the built-in micro_batches does); the study reads it to learn
# the largest micro-batch that fits (autotune.study.objective.infeasible).
OUT_OF_MEMORY_ROWS = "out_of_memory_rows"

if TYPE_CHECKING:
    import torch

    from autotune.hardware import Hardware
    from autotune.workloads import Workload


@dataclass(frozen=True)
class Rank:
    """Which of a multi-process run's processes this plan is for (torch.distributed is set up)."""

    rank: int
    world_size: int
    backend: str  # "nccl" on CUDA, "gloo" on CPU

    @property
    def is_first(self) -> bool:
        return self.rank == 0


@dataclass
class TrainingPlan:
    """Everything the engine builds a run from. Knobs edit it in `Knob.apply`.

    The engine fills `device`, `hardware`, `workload` and the workload's defaults first; knobs then
    change fields, append callables or hook loop events (`on`). Model transforms run in `order`
    (lower first): pruning (10) must happen before channels_last (20), and torch.compile (90)
    last. `notes` is what a knob wants its user to see of what it did: it comes back in the run's
    result, `trial run --json` and the trial's attributes.

    Multi-process runs (data-parallel training): a knob sets `processes` to N while `rank` is None.
    The engine then starts N processes, sets up torch.distributed among them, and builds a plan in
    each with `rank` set, on that process's device; the knob, seeing `rank`, changes that process's
    run (wraps the model in DistributedDataParallel, takes its share of the batch). The engine
    shards the training data (DistributedSampler), sums validation over the processes and makes
    them agree on when to stop; the first process measures and reports.
    """

    device: "torch.device"
    hardware: "Hardware"
    workload: "Workload"
    batch_size: int = 64
    loader: dict[str, Any] = field(default_factory=dict)
    optimizer_factory: Callable[..., "torch.optim.Optimizer"] | None = None
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    autocast_dtype: "torch.dtype | None" = None
    grad_scaler: bool = False
    loss_fn: Callable[..., "torch.Tensor"] | None = None
    model_transforms: list[tuple[int, Callable[[Any], Any]]] = field(default_factory=list)
    input_transforms: list[Callable[[Any], Any]] = field(default_factory=list)
    grad_hooks: list[Callable[[Any], None]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    handlers: dict[Event, list[Callable[..., Any]]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    processes: int = 1
    rank: Rank | None = None
    # The user's own loop trains this plan (a --script trial, autotune.apply): FIT_START,
    # AFTER_STEP, EPOCH_END, AFTER_EVAL and FIT_END fire; STEP and BEFORE_EVAL cannot (the
    # script does its forward and its validation itself), and a knob that hooks them is refused.
    own_loop: bool = False

    def transform_model(self, fn: Callable[[Any], Any], order: int = 50) -> None:
        """Register `fn(model) -> model`, run after the model is on its device."""
        self.model_transforms.append((order, fn))

    def transform_inputs(self, fn: Callable[[Any], Any]) -> None:
        """Register `fn(tensor) -> tensor`, run on every tensor of each batch (training and
        validation) once it is on the device; a batch of any structure keeps its structure."""
        self.input_transforms.append(fn)

    def on(self, event: Event | str, fn: Callable[..., Any]) -> None:
        """Register `fn` for a loop event (autotune.run.loop_events lists them and their signatures)."""
        try:
            key = Event(event)
        except ValueError:
            raise ValueError(f"unknown loop event {event!r} (events: {', '.join(e.value for e in Event)})") from None
        self.handlers.setdefault(key, []).append(fn)

    def on_gradients(self, fn: Callable[[Any], None]) -> None:
        """Register `fn(model)`, run after backward (gradients unscaled) and before the step."""
        self.grad_hooks.append(fn)

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        """Register `fn()`, run when the run ends, to undo process-wide changes."""
        self.cleanups.append(fn)
