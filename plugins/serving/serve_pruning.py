"""serve_pruning: structured pruning of the trained model for serving, then a short fine-tune.

A fraction of the channels goes, with the same method as the training knob `structured_pruning`
(autotune.plugins.channel_pruning: torch-pruning's dependency graph, the lowest L2 magnitude, the
output layer kept): a smaller dense model, fewer multiply-accumulates a call. Removing channels
of a trained model costs accuracy; `serve_prune_finetune_steps` optimizer steps on the workload's
training data, with its own loss, win some back before the model is served. The accuracy guard
judges the result like any trial's: an over-pruned model is infeasible.

The fine-tune is seeded from the trial's seed, so a trial and its export's rebuild give the same
weights; it runs before any timed call, so its time is never latency: it is reported in the
trial's notes, with what was removed. torch-pruning is the `prune` extra, as for the training knob.
"""

from __future__ import annotations

import time

from autotune import InferencePlan, Knob, Param, hookimpl
from autotune.plugins import channel_pruning

# Before channels_last (5), quantization (10), the precision cast (20) and compilation (90): they
# must see the final shapes, and the fine-tune trains the fp32 NCHW model as training did.
ORDER = 3
EIGHTHS = tuple(i / 8 for i in range(1, 8))  # the nonzero fractions the fine-tune steps exist for
# The optimizer of the fine-tune: Adam at 1e-3, not the checkpoint's recorded optimizer. The plan
# cannot rebuild that one (training knobs an inference registry does not load build it, with a
# schedule), and its recorded learning rate is a schedule's start for training from scratch, too
# high to repair a trained model (digits' test recipe: SGD 0.05). Adam at 1e-3 is the usual
# fine-tuning default and needs no tuning per model; on digits, half the channels removed, it
# recovered more in 50 steps (accuracy 0.93) than SGD at the recorded 0.05 (0.86).
LEARNING_RATE = 1e-3
DEFAULT_BATCH = 64  # when the workload's recipe names no batch_size


class ServePruning(Knob):
    name = "serve_pruning"
    help = "fraction of channels removed from the trained model (torch-pruning), then a short fine-tune"
    kind = "statistical"
    task = "inference"

    def params(self, hardware):
        # The training knob's grid of eighths (widths stay multiples of 8 channels) and range.
        return [
            Param("serve_pruning", "float", low=0.0, high=0.5, step=0.125, valid=(0.0, 0.875),
                  help="fraction of channels removed (0: none)"),
            Param("serve_prune_finetune_steps", "int", low=0, high=200, step=25, valid=(0, None),
                  when={"serve_pruning": EIGHTHS},
                  help="optimizer steps on the training data after pruning (only with serve_pruning > 0)"),
        ]

    def baseline(self, hardware):
        return {"serve_pruning": 0.0, "serve_prune_finetune_steps": 0}

    def unavailable(self, hardware):
        return channel_pruning.unavailable()

    def apply(self, settings, plan: InferencePlan):
        fraction = settings["serve_pruning"]
        if fraction <= 0:
            return
        steps = int(settings.get("serve_prune_finetune_steps", 0))

        def prune(model):
            pruned = channel_pruning.prune_channels(model, fraction, plan.example, knob="serve_pruning")
            with plan.unmeasured():
                seconds, loss = fine_tune(plan, model, steps)
            before, after = pruned.parameters
            short = channel_pruning.short
            plan.notes["serve_pruning"] = (
                f"removed {fraction:.1%} of the channels: {pruned.channels_removed} channels/filters in "
                f"{pruned.layers_changed} layers; parameters {short(before)} -> {short(after)} "
                f"({after / max(before, 1):.2f}x); fine-tuned {steps} steps in {seconds:.2f} s (not in latency)"
            )
            plan.notes["serve_pruning_counts"] = {
                "channels_removed": pruned.channels_removed,
                "layers_pruned": pruned.layers_changed,
                "parameters": list(pruned.parameters),
                "macs_per_sample": list(pruned.macs_per_sample),
                "finetune_steps": steps,
                "finetune_seconds": seconds,
                "finetune_last_loss": loss,
            }
            return model

        plan.transform_model(prune, order=ORDER)


def fine_tune(plan: InferencePlan, model, steps: int) -> tuple[float, float | None]:
    """Train `model` in place for `steps` optimizer steps (Adam, LEARNING_RATE) on the workload's
    training batches at its recipe's batch size, seeded by the plan; back in eval mode after.
    Returns (seconds, the last step's loss)."""
    if steps <= 0:
        return 0.0, None
    import torch

    started = time.perf_counter()
    torch.manual_seed(plan.seed)  # dropout and the like: the same weights every time
    batch_size = int(plan.workload.baseline.get("batch_size") or DEFAULT_BATCH)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss = None
    model.train()
    try:
        for step, batch in enumerate(plan.training_batches(batch_size)):
            if step >= steps:
                break
            optimizer.zero_grad(set_to_none=True)
            loss = plan.training_loss(model, batch)
            loss.backward()
            optimizer.step()
    finally:
        model.eval()
        optimizer.zero_grad(set_to_none=True)  # no gradients ride along into the served model
        del optimizer
    return time.perf_counter() - started, None if loss is None else float(loss.detach())


@hookimpl
def register_knobs(register):
    register(ServePruning())
