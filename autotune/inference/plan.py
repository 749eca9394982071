"""The InferencePlan: everything one inference trial serves a trained model from, as the
inference knobs (Knob.task "inference") leave it. Torch-free to import, like TrainingPlan."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

if TYPE_CHECKING:
    import torch

    from autotune.hardware import Hardware
    from autotune.workloads import Workload

# What the model is called with: positional and keyword arguments (autotune.inference.calls)
Call = tuple[tuple[Any, ...], dict[str, Any]]

# Transforms from this order on wrap the model for execution (torch.compile at 90, TensorRT at
# 85): the model's size on disk is measured before them, on the model they run.
EXECUTION_ORDER = 80


@dataclass
class InferencePlan:
    """How a trained model is served in one inference trial. Inference knobs edit it in
    `Knob.apply`; the engine (autotune.inference.serve) then builds the served model and
    measures it.

    `model` is the trained model (eval mode, on `device`), `example` what it is called with for
    a few validation samples, and `calibration(n)` what it is called with for the first `n`
    validation batches of `batch_size` samples (static quantization observes them); both as the
    data gives them: `inputs(call)` applies the input transforms (a cast, channels_last). Knobs do not
    change `model` in `apply`: they register `transform_model(fn, order)`, run in `order` (lower
    first) on the model: channels_last (5), int8 quantization (10), the serving precision (20),
    TensorRT (85), torch.compile (90). `dtype` is the floating-point type the model's weights
    and inputs are cast to (None: as trained, fp32); `threads` the intra-op threads
    (None: torch's default). `notes` is what a knob wants its user to see, in the trial's
    results. `compiled` says a transform compiles on the first call, so that call's time is
    reported as compile time, never as latency.

    A transform that trains the model before it is served (serve_pruning's fine-tune) takes the
    workload's training batches from `training_batches(n)` and their loss from
    `training_loss(model, batch)`, seeds from `seed` (the trial's, InferenceOptions.seed, which
    an export's rebuild uses too), and runs inside `unmeasured()`, so that its memory is not
    counted as the served model's peak (its time never is: transforms run before any timed call).
    """

    device: "torch.device"
    hardware: "Hardware"
    workload: "Workload"
    model: "torch.nn.Module"
    example: Call
    calibration: Callable[[int], Iterator[Call]]
    batch_size: int = 1
    threads: int | None = None
    dtype: "torch.dtype | None" = None
    compiled: bool = False
    model_transforms: list[tuple[int, Callable[[Any], Any]]] = field(default_factory=list)
    input_transforms: list[Callable[[Any], Any]] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    # set by the engine while it samples peak memory (autotune.inference.timing.MemoryPeak.paused)
    unmeasured: Callable[[], AbstractContextManager[Any]] = field(default=nullcontext, repr=False)

    def transform_model(self, fn: Callable[[Any], Any], order: int = 50) -> None:
        """Register `fn(model) -> model`, run on the trained model before it is measured."""
        self.model_transforms.append((order, fn))

    def transform_inputs(self, fn: Callable[[Any], Any]) -> None:
        """Register `fn(tensor) -> tensor`, run on every tensor the model is called with."""
        self.input_transforms.append(fn)

    def inputs(self, call: Call) -> Call:
        """`call` with every input transform registered so far applied to its tensors: what the
        served model is called with (a knob that traces or calibrates the model uses it)."""
        from autotune.batches import map_tensors

        args, kwargs = call
        for fn in self.input_transforms:
            args, kwargs = map_tensors(args, fn), map_tensors(kwargs, fn)
        return args, kwargs

    def on_cleanup(self, fn: Callable[[], None]) -> None:
        """Register `fn()`, run when the trial ends, to undo process-wide changes."""
        self.cleanups.append(fn)

    def training_batches(self, batch_size: int) -> Iterator[Any]:
        """Batches of `batch_size` samples of the workload's training set, on `device`, as the
        training engine collates them: reshuffled each epoch in an order fixed by `seed`, endless."""
        import torch
        from torch.utils.data import DataLoader

        from autotune.batches import to_device

        order = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(self.workload.train_data, batch_size=batch_size, shuffle=True, generator=order)
        while True:
            empty = True
            for batch in loader:
                empty = False
                yield to_device(batch, self.device)
            if empty:
                return

    def training_loss(self, model: Any, batch: Any) -> Any:
        """The loss training minimises for `batch` (on `device`): the workload's `train_step`, or
        its `loss_fn` on `model(batch[0])` and `batch[1]`, as the training engine computes it."""
        from autotune.run.evaluation import train_step_for
        from autotune.run.plan import TrainingPlan

        step = train_step_for(TrainingPlan(device=self.device, hardware=self.hardware, workload=self.workload,
                                           loss_fn=self.workload.loss_fn))
        return step(model, batch)
