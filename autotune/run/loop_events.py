"""The events of the training loop a knob can hook with `plan.on(event, fn)`.

Seven events, each called with the loop's state (autotune.run.loop_state.LoopState) first:

    FIT_START    fn(state)                    model, optimizer and scaler built; before the first step
    STEP         fn(state, batch, step) -> loss   wraps one training step (see below)
    AFTER_STEP   fn(state, loss)              after each optimizer step; `loss` is a float
    EPOCH_END    fn(state)                    after the last batch of an epoch
    BEFORE_EVAL  fn(state)                    before a validation (the model is still in train mode)
    AFTER_EVAL   fn(state, metrics)           after it, with the metrics it measured
    FIT_END      fn(state)                    training is over (also after an early stop); not after a crash

STEP handlers wrap the step like middleware: the first registered is the outermost. `step(batch)`
runs the rest of the chain, whose innermost link is the default step
(`state.forward_backward(batch)` then `state.optimizer_step()`); a handler may call it, call it
with another batch, or do the step itself through the same two methods (gradient accumulation
cuts the batch into micro-batches and calls `forward_backward` for each, `optimizer_step` once).
One STEP is one batch from the loader and one optimizer step: budgets in steps, step times and
throughput count those, whatever a handler does inside.

Handlers of the other events run in registration order, which is the knobs' apply order
(`Knob.after`, then registration order: see autotune.registry).
"""

from __future__ import annotations

import enum


class Event(str, enum.Enum):
    FIT_START = "fit_start"
    STEP = "step"
    AFTER_STEP = "after_step"
    EPOCH_END = "epoch_end"
    BEFORE_EVAL = "before_eval"
    AFTER_EVAL = "after_eval"
    FIT_END = "fit_end"


# What each event's handlers are called with, in order (docs/plugins.md has a heading for each,
# and tests hold the loop to it).
ARGUMENTS: dict[Event, tuple[str, ...]] = {
    Event.FIT_START: ("state",),
    Event.STEP: ("state", "batch", "step"),
    Event.AFTER_STEP: ("state", "loss"),
    Event.EPOCH_END: ("state",),
    Event.BEFORE_EVAL: ("state",),
    Event.AFTER_EVAL: ("state", "metrics"),
    Event.FIT_END: ("state",),
}
