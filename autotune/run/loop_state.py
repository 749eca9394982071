"""LoopState: what the training loop hands to the knobs' event handlers, and the two methods a
training step is made of (forward_backward, optimizer_step), so that a handler that does the step
itself (gradient accumulation) gets autocast, the GradScaler, DDP's no_sync and the gradient
hooks right without knowing about them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from autotune import batches
from autotune.run.loop_events import Event

if TYPE_CHECKING:
    from autotune.run.plan import TrainingPlan


@dataclass
class LoopState:
    """The run as the loop events see it. Handlers read it and may change the optimizer's
    param groups (an LR schedule), the model's weights (EMA swaps them for validation) or `notes`.

    step: optimizer steps done; epoch: epochs started (1 during the first); steps_per_epoch: of
    the training loader (None for an iterable dataset); total_steps: the budget in steps (None
    for a budget in seconds, when `budget_seconds` is set); train_time: training seconds so far;
    metrics: the last validation's metrics; loss: the last step's loss.
    """

    plan: "TrainingPlan"
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    train_step: Callable[[torch.nn.Module, Any], torch.Tensor]
    total_steps: int | None = None
    budget_seconds: float | None = None
    steps_per_epoch: int | None = None
    step: int = 0
    epoch: int = 0
    samples: int = 0
    train_time: float = 0.0
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.plan.device

    @property
    def notes(self) -> dict[str, Any]:
        return self.plan.notes

    @property
    def fraction(self) -> float:
        """How much of the budget is spent, 0..1 (steps, or seconds of training)."""
        if self.total_steps:
            return min(1.0, self.step / self.total_steps)
        if self.budget_seconds:
            return min(1.0, self.train_time / self.budget_seconds)
        return 0.0

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The run's autocast (a no-op at fp32)."""
        return autocast(self.plan)

    def forward_backward(self, batch: Any, loss_scale: float = 1.0, sync: bool = True) -> torch.Tensor:
        """The workload's loss on `batch` under autocast, and its backward pass through the
        GradScaler, with the loss multiplied by `loss_scale` (a micro-batch's share of the batch).
        With `sync=False` a DistributedDataParallel model skips its gradient all-reduce
        (`no_sync`): for every micro-batch but the last. Returns the unscaled loss, detached."""
        quiet = getattr(self.model, "no_sync", None) if not sync else None
        with quiet() if quiet is not None else contextlib.nullcontext():
            with self.autocast():
                loss = self.train_step(self.model, batch)
            self.scaler.scale(loss * loss_scale if loss_scale != 1.0 else loss).backward()
        return loss.detach()

    def optimizer_step(self) -> None:
        """Unscale the gradients (when a knob hooks them), run the gradient hooks, step the
        optimizer through the GradScaler, and clear the gradients."""
        optimizer_step(self.plan, self.model, self.optimizer, self.scaler)

    def default_step(self, batch: Any) -> torch.Tensor:
        loss = self.forward_backward(batch)
        self.optimizer_step()
        return loss

    @staticmethod
    def split(batch: Any, parts: int) -> list[Any]:
        """`batch` cut into at most `parts` micro-batches (autotune.batches.split)."""
        return batches.split(batch, parts)

    @staticmethod
    def batch_size(batch: Any) -> int:
        return batches.batch_size(batch)

    def emit(self, event: Event, *args: Any) -> None:
        for handler in self.plan.handlers.get(event, ()):
            handler(self, *args)

    def step_chain(self) -> Callable[[Any], torch.Tensor]:
        """One training step through the STEP handlers, the first registered outermost."""
        chain: Callable[[Any], torch.Tensor] = self.default_step
        for handler in reversed(self.plan.handlers.get(Event.STEP, [])):
            chain = _link(self, handler, chain)
        return chain


def autocast(plan: "TrainingPlan") -> contextlib.AbstractContextManager[Any]:
    """The plan's autocast: every forward of a run (training, validation, a script's) uses it."""
    dtype = plan.autocast_dtype
    return torch.autocast(plan.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def optimizer_step(
    plan: "TrainingPlan", model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
) -> None:
    """The one optimizer step of every loop (the engine's, a knob's, autotune.apply's): unscale
    when gradient hooks need true gradients, the hooks, the step through the scaler, zero_grad."""
    if plan.grad_hooks:
        scaler.unscale_(optimizer)
        for hook in plan.grad_hooks:
            hook(model)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def _link(state: LoopState, handler: Callable[..., Any], inner: Callable[[Any], torch.Tensor]) -> Callable[[Any], Any]:
    return lambda batch: handler(state, batch, inner)
