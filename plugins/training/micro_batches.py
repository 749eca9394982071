"""micro_batches: gradient accumulation that keeps the searched batch. Each loader batch
(`batch_size` samples, which stays the effective batch) is cut into N micro-batches; each runs
forward and backward with its loss scaled by its share of the batch's samples, and one optimizer
step follows. For a loss that is a mean over the batch's samples (cross-entropy, a workload's own
`train_step` that averages) the step equals the unsplit one; BatchNorm sees micro-batches.

Automatic micro-batching (after Composer's): when forward or backward of a step raises
`torch.OutOfMemoryError` (what CUDA's allocator raises), the partial gradients are dropped, memory
is freed, and the step runs again with twice the micro-batches, up to one sample each; later steps
keep the new count. This also holds at micro_batches=1, the baseline, where otherwise nothing
changes: the rest of the step chain runs as it would without the knob. It is off in
multi-process runs (one process retrying alone would desynchronise the others) and for a fault in
the optimizer step (a partial update cannot be undone).

Notes: `micro_batches` (the count in use at the end) and `micro_batch_rows` (samples in each
micro-batch of a full batch), when above 1; after a fault `micro_batch_retries` and
`out_of_memory_rows`, the smallest micro-batch that ran out of memory, which the study reads to
learn the largest one that fits (autotune.study.objective).
"""

from __future__ import annotations

import gc
import math
from typing import Any

from autotune import Event, Knob, Need, Param, TrainingPlan, hookimpl
from autotune.run.plan import OUT_OF_MEMORY_ROWS


class MicroBatches(Knob):
    name = "micro_batches"
    help = "cut each batch into N micro-batches and accumulate their gradients (same batch); more on out-of-memory"
    kind = "systems"  # the same step, except with BatchNorm
    # It does the step itself, so it must be the innermost STEP handler of the knobs it knows;
    # and so it needs autotune's loop: a script's own loop runs its own steps (left out there).
    after = ("activation_checkpointing",)
    needs = (Need.ENGINE_LOOP,)

    def params(self, hardware):
        return [Param("micro_batches", "int", low=1, high=4, log=True, valid=(1, None))]

    def baseline(self, hardware):
        return {"micro_batches": 1}

    def apply(self, settings, plan: TrainingPlan):
        accumulation = Accumulation(int(settings["micro_batches"]))
        plan.on(Event.FIT_START, accumulation.fit_start)
        plan.on(Event.STEP, accumulation.step)


class Accumulation:
    """The STEP handler of one run and what it has learnt: the micro-batch count in use."""

    def __init__(self, parts: int) -> None:
        import torch

        self.out_of_memory = torch.OutOfMemoryError
        self.parts = parts
        self.retries = 0
        self.failed_rows: int | None = None
        self.stepping = False  # set when the optimizer step of the current attempt has begun
        self.batch_norm = False

    def fit_start(self, state: Any) -> None:
        from torch import nn

        state.optimizer.register_step_pre_hook(self._stepping)
        self.batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in state.model.modules())
        if self.parts > 1:
            self._note(state)

    def _stepping(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.stepping = True

    def step(self, state: Any, batch: Any, inner: Any) -> Any:
        rows = state.batch_size(batch)
        while True:
            self.stepping = False
            try:
                # one part: the rest of the chain, exactly as without this knob
                return inner(batch) if self.parts == 1 else self._accumulate(state, batch)
            except self.out_of_memory:
                failed = math.ceil(rows / min(self.parts, rows))
                self.failed_rows = failed if self.failed_rows is None else min(self.failed_rows, failed)
                state.notes[OUT_OF_MEMORY_ROWS] = self.failed_rows
                if state.plan.rank is not None or self.stepping or failed <= 1:
                    raise
            # out of the except block: its traceback holds the failed attempt's activations
            self._recover(state)

    def _accumulate(self, state: Any, batch: Any) -> Any:
        """Does the whole step: STEP handlers registered after this one do not run."""
        micro = state.split(batch, self.parts)
        sizes = [state.batch_size(m) for m in micro]
        total = sum(sizes)
        loss: Any = 0.0
        for index, (part, size) in enumerate(zip(micro, sizes)):
            share = size / total
            last = index == len(micro) - 1
            loss = loss + state.forward_backward(part, loss_scale=share, sync=last) * share
        state.optimizer_step()
        return loss

    def _recover(self, state: Any) -> None:
        import torch

        state.optimizer.zero_grad(set_to_none=True)  # the failed attempt's partial gradients
        gc.collect()
        if state.device.type == "cuda":
            torch.cuda.empty_cache()
        self.parts = min(self.parts * 2, state.plan.batch_size)
        self.retries += 1
        state.notes["micro_batch_retries"] = self.retries
        self._note(state)

    def _note(self, state: Any) -> None:
        state.notes["micro_batches"] = self.parts
        state.notes["micro_batch_rows"] = math.ceil(state.plan.batch_size / self.parts)
        if self.batch_norm:
            state.notes["micro_batches_batch_norm"] = "BatchNorm normalises each micro-batch on its own"


@hookimpl
def register_knobs(register):
    register(MicroBatches())
