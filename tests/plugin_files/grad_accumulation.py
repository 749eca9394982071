"""Plugin: knob `accumulation_steps`, gradient accumulation that keeps the effective batch.

Each loader batch (`batch_size` samples, or this process's share of them under data_parallel)
is cut into `accumulation_steps` micro-batches (`state.split`); each runs forward and backward
with `loss_scale` = its share of the batch's samples, so the accumulated gradient is the batch's
mean gradient (for a workload whose loss is a mean over the batch, as cross-entropy is), and
only the last micro-batch synchronises gradients across data-parallel processes (`sync=False`,
DDP's `no_sync`, for the others). Then one optimizer step. So `--budget-steps` still counts
optimizer steps, one per loader batch, and throughput counts the whole batch's samples: the knob
trades speed for peak memory and, without BatchNorm, learns the same.

Notes (with accumulation_steps > 1): `accumulation_steps` (the setting), `accumulation_micro_batches` (the micro-batch sizes
of each distinct split seen, e.g. [[8, 8, 8, 8], [3, 2, 2, 2]] with a short last batch),
`accumulation_no_sync` (whether the model had `no_sync`, i.e. whether the intermediate
micro-batches skipped the all-reduce) and `accumulation_unsynced_micro_batches` (how many did).
"""

from autotune import Event, Knob, Param, hookimpl


class GradAccumulation(Knob):
    name = "accumulation_steps"
    help = "split each batch into N micro-batches and accumulate their gradients (same effective batch)"
    kind = "systems"  # same learning with the same effective batch, except with BatchNorm

    def params(self, hardware):
        return [Param("accumulation_steps", "int", low=1, high=8, valid=(1, 64))]

    def baseline(self, hardware):
        return {"accumulation_steps": 1}

    def apply(self, settings, plan):
        parts = int(settings["accumulation_steps"])
        if parts <= 1:
            return  # the engine's own step: nothing to do, nothing to note
        plan.notes["accumulation_steps"] = parts
        splits = []
        counts = {"unsynced": 0}

        def start(state):
            has_no_sync = hasattr(state.model, "no_sync")
            state.notes["accumulation_no_sync"] = has_no_sync
            state.notes["accumulation_unsynced_micro_batches"] = 0

        def step(state, batch, inner):
            # Does the step itself (state.forward_backward / optimizer_step), so STEP handlers
            # registered after this one (inner links) do not run.
            micro = state.split(batch, parts)
            sizes = [state.batch_size(m) for m in micro]
            total = sum(sizes)
            if sizes not in splits:
                splits.append(sizes)
                state.notes["accumulation_micro_batches"] = [list(s) for s in splits]
            loss = 0.0
            for index, (part, size) in enumerate(zip(micro, sizes)):
                last = index == len(micro) - 1
                share = size / total
                part_loss = state.forward_backward(part, loss_scale=share, sync=last)
                if not last and hasattr(state.model, "no_sync"):
                    counts["unsynced"] += 1
                loss = loss + part_loss * share  # the unscaled micro-batch loss, weighted
            state.notes["accumulation_unsynced_micro_batches"] = counts["unsynced"]
            state.optimizer_step()
            return loss

        plan.on(Event.FIT_START, start)
        plan.on(Event.STEP, step)


@hookimpl
def register_knobs(register):
    register(GradAccumulation())
