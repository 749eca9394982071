"""structured_pruning: remove a fraction of the channels before training, so a smaller dense
model trains: fewer parameters, fewer multiply-accumulates, and (unlike `pruning`, which only
zeroes weights that dense kernels still multiply) less work in every step.

The channels go with torch-pruning's dependency graph (autotune.plugins.channel_pruning, shared
with the inference knob `serve_pruning`): the lowest group L2 magnitude, the same fraction in
every group, once, when the model has been built and before the optimizer is. A model with
convolutions loses channels in every group that does not reach the output layer; a model without
(an MLP, a transformer) only hidden widths (a transformer's MLP width; attention and the residual
width are kept). The output layer keeps its outputs, so the model's output shape does not change;
a run in which it would have changed fails with one line saying so.

torch-pruning is an optional extra (`pip install 'autotune[prune]'`): without it the knob is
unavailable, with that line as the reason, and everything else works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autotune import Knob, Need, Param, TrainingPlan, hookimpl
from autotune.plugins import channel_pruning

if TYPE_CHECKING:
    import torch

    from autotune import Workload

# Before `pruning` (10), whose masks must be taken on the weights that will train; before
# channels_last (20), the DDP wrap (80) and torch.compile (90), which must see the final shapes.
ORDER = 5
EXAMPLE_SAMPLES = 2  # tracing needs a batch; two samples keep BatchNorm-style layers well-defined

Call = tuple[tuple[Any, ...], dict[str, Any]]  # the model's positional and keyword arguments


class StructuredPruning(Knob):
    name = "structured_pruning"
    help = "fraction of channels removed before training (torch-pruning): a smaller, faster dense model"
    kind = "statistical"
    # the channels are found by tracing the model on the first training samples: a script's own
    # loop hands autotune its model before its data, so there the knob is left out, with why
    needs = (Need.TRAINING_DATA,)

    def params(self, hardware):
        # Searched on a grid of eighths: the power-of-two widths of common models (ResNet's 64..512)
        # then keep multiples of 8 channels, the sizes tensor cores and 16-float SIMD vectors run
        # without padding. Past one half most of the accuracy of a short run goes; 0.9 still runs.
        return [Param("structured_pruning", "float", low=0.0, high=0.5, step=0.125, valid=(0.0, 0.9))]

    def baseline(self, hardware):
        return {"structured_pruning": 0.0}

    def unavailable(self, hardware):
        return channel_pruning.unavailable()

    def apply(self, settings, plan: TrainingPlan):
        fraction = settings["structured_pruning"]
        if fraction <= 0:
            return
        workload = plan.workload

        def prune(model):
            plan.notes.update(prune_channels(model, fraction, example_call(workload, model)))
            return model

        plan.transform_model(prune, order=ORDER)


def prune_channels(model: torch.nn.Module, fraction: float, call: Call) -> dict[str, Any]:
    """Remove `fraction` of the channels of every prunable group of `model` in place
    (autotune.plugins.channel_pruning: which groups, and how) and return the notes describing it.

    `call` is what the model is called with (`example_call`). The model keeps its train/eval mode.
    Raises RuntimeError naming the knob if the model's output shape changed.
    """
    pruned = channel_pruning.prune_channels(model, fraction, call, knob="structured_pruning")
    (before_params, after_params), (before_macs, after_macs) = pruned.parameters, pruned.macs_per_sample
    conv = pruned.convolutional
    what = "channels" if conv else "hidden width of MLP blocks (attention and residual width kept)"
    if not pruned.layers_changed:
        summary = (f"nothing pruned: every {'channel group' if conv else 'Linear layer'} of this model "
                   "reaches its output layer" + ("" if conv else " or attention"))
    else:
        short = channel_pruning.short
        summary = (
            f"removed {fraction:.1%} of the {what} ({pruned.layers_changed} layers changed, output layer kept): "
            f"parameters {short(before_params)} -> {short(after_params)} ({after_params / before_params:.2f}x), "
            f"MACs a sample {short(before_macs)} -> {short(after_macs)} ({after_macs / max(before_macs, 1):.2f}x); "
            "'steady step' (step_time) is the pruned model's: compare it with a structured_pruning=0 run"
        )
    return {
        "structured_pruning": summary,
        "structured_pruning_counts": {
            "parameters": [before_params, after_params],
            "macs_per_sample": [before_macs, after_macs],
            "layers_pruned": pruned.layers_changed,
        },
    }


def example_call(workload: Workload, model: torch.nn.Module) -> Call:
    """What `workload` calls `model` with, for a batch of its first training samples, on the
    model's device: `(batch[0],)` for the default step, otherwise captured from one forward of
    the workload's own `train_step` (eval mode, no gradients)."""
    import torch
    from torch.utils.data import default_collate

    device = next(model.parameters()).device
    batch = _to(default_collate(_first_samples(workload.train_data, EXAMPLE_SAMPLES)), device)
    if workload.train_step is None:
        return (batch[0],), {}
    captured: list[Call] = []

    def grab(module, args, kwargs):
        if not captured:
            captured.append((args, kwargs))

    hook = model.register_forward_pre_hook(grab, with_kwargs=True)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            workload.train_step(model, batch)
    finally:
        hook.remove()
        model.train(training)
    if not captured:
        raise RuntimeError(f"structured_pruning: workload '{workload.name}''s train_step never called its model")
    return captured[0]


def _first_samples(data: Any, count: int) -> list[Any]:
    try:
        return [data[i] for i in range(min(count, len(data)))]
    except (TypeError, NotImplementedError):  # an iterable dataset: no len() or indexing
        samples = []
        for sample in data:
            samples.append(sample)
            if len(samples) == count:
                break
        return samples


def _to(batch: Any, device: torch.device) -> Any:
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


@hookimpl
def register_knobs(register):
    register(StructuredPruning())
