"""structured_pruning: remove a fraction of the channels before training, so a smaller dense
model trains: fewer parameters, fewer multiply-accumulates, and (unlike `pruning`, which only
zeroes weights that dense kernels still multiply) less work in every step.

The channels go with torch-pruning's dependency graph (DepGraph, Fang et al., CVPR 2023): removing
a convolution's output channel also removes what depends on it (the BatchNorm's entries, the next
layer's input channels, every layer tied to it by a residual sum), so the model stays consistent.
Which channels go: the lowest group L2 magnitude, the same fraction in every group (local
pruning), once, when the model has been built and before the optimizer is.

What is pruned:
- a model with convolutions: every channel group, except those that reach the output layer;
- a model without (an MLP, a transformer): only hidden widths, the channels a Linear layer hands
  through element-wise ops (an activation) to other Linear layers alone: a transformer's MLP
  width. Attention is left whole: torch-pruning cuts heads safely only when told each qkv
  layer's head count, which an arbitrary model does not declare; the residual width is tied to
  the embeddings and the output layer.
The output layer (the last convolution or Linear layer to run, and any whose output is the
model's output) keeps its outputs, so the model's output shape does not change; a run in which it
would have changed fails with one line saying so.

torch-pruning is an optional extra (`pip install 'autotune[prune]'`): without it the knob is
unavailable, with that line as the reason, and everything else works.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from autotune import Knob, Param, TrainingPlan, hookimpl

if TYPE_CHECKING:
    import torch

    from autotune import Workload

INSTALL = "pip install 'autotune[prune]'"
# Before `pruning` (10), whose masks must be taken on the weights that will train; before
# channels_last (20), the DDP wrap (80) and torch.compile (90), which must see the final shapes.
ORDER = 5
EXAMPLE_SAMPLES = 2  # tracing needs a batch; two samples keep BatchNorm-style layers well-defined

Call = tuple[tuple[Any, ...], dict[str, Any]]  # the model's positional and keyword arguments


class StructuredPruning(Knob):
    name = "structured_pruning"
    help = "fraction of channels removed before training (torch-pruning): a smaller, faster dense model"
    kind = "statistical"

    def params(self, hardware):
        # Searched on a grid of eighths: the power-of-two widths of common models (ResNet's 64..512)
        # then keep multiples of 8 channels, the sizes tensor cores and 16-float SIMD vectors run
        # without padding. Past one half most of the accuracy of a short run goes; 0.9 still runs.
        return [Param("structured_pruning", "float", low=0.0, high=0.5, step=0.125, valid=(0.0, 0.9))]

    def baseline(self, hardware):
        return {"structured_pruning": 0.0}

    def unavailable(self, hardware):
        if importlib.util.find_spec("torch_pruning") is None:
            return f"needs torch-pruning ({INSTALL})"
        return None

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
    """Remove `fraction` of the channels of every prunable group of `model` in place (see the
    module docstring for which groups) and return the notes describing it.

    `call` is what the model is called with (`example_call`). The model keeps its train/eval mode.
    Raises RuntimeError naming the knob if the model's output shape changed.
    """
    import torch
    import torch_pruning as tp

    training = model.training
    before_params, before_macs, outputs_before, output_layers = measure(model, call)
    conv = any(isinstance(m, convolutions()) for m in model.modules())
    ignored = list(output_layers)
    if not conv:
        ignored += widths_not_hidden(model, call, ignored)
    shapes = {name: p.shape for name, p in model.named_parameters()}

    try:
        pruner = tp.pruner.BasePruner(
            model, call, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=fraction,
            ignored_layers=ignored, forward_fn=_forward, root_module_types=[*convolutions(), torch.nn.Linear],
        )
        pruner.step()
    except Exception as exc:  # torch-pruning traces arbitrary models: say whose failure it is
        raise RuntimeError(f"structured_pruning: torch-pruning could not prune {type(model).__name__}: "
                           f"{type(exc).__name__}: {exc}") from exc
    finally:
        model.train(training)  # tracing puts the model in eval mode

    after_params, after_macs, outputs_after, _ = measure(model, call)
    if outputs_after != outputs_before:
        raise RuntimeError(
            f"structured_pruning changed the model's output shape from {outputs_before} to {outputs_after}"
        )
    changed = {name.rsplit(".", 1)[0] for name, p in model.named_parameters() if shapes.get(name) != p.shape}
    what = "channels" if conv else "hidden width of MLP blocks (attention and residual width kept)"
    if not changed:
        summary = (f"nothing pruned: every {'channel group' if conv else 'Linear layer'} of this model "
                   "reaches its output layer" + ("" if conv else " or attention"))
    else:
        summary = (
            f"removed {fraction:.1%} of the {what} ({len(changed)} layers changed, output layer kept): "
            f"parameters {_short(before_params)} -> {_short(after_params)} ({after_params / before_params:.2f}x), "
            f"MACs a sample {_short(before_macs)} -> {_short(after_macs)} ({after_macs / max(before_macs, 1):.2f}x); "
            "'steady step' (step_time) is the pruned model's: compare it with a structured_pruning=0 run"
        )
    return {
        "structured_pruning": summary,
        "structured_pruning_counts": {
            "parameters": [before_params, after_params],
            "macs_per_sample": [before_macs, after_macs],
            "layers_pruned": len(changed),
        },
    }


def _forward(model: torch.nn.Module, call: Call) -> Any:
    args, kwargs = call
    return model(*args, **kwargs)


def convolutions() -> tuple[type, ...]:
    """The layer types that make a model "convolutional" here, and whose MACs `measure` counts
    (transposed convolutions aside: their weights are laid out input-first)."""
    from torch import nn

    return (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def measure(model: torch.nn.Module, call: Call) -> tuple[int, int, list[tuple[int, ...]], list[Any]]:
    """(parameters, MACs a sample, output shapes, output layers) of `model` under `call`.

    Parameters count shared tensors once. MACs are those of convolutions and Linear layers (what
    pruning shrinks; norms, activations and attention's own matmuls are left out). The output
    layers are the last convolution or Linear layer to run and any whose output is returned.
    """
    import torch
    from torch import nn

    layers = (*convolutions(), nn.Linear)
    macs = 0
    ran: list[nn.Module] = []
    produced: dict[int, nn.Module] = {}

    def count(module, args, output):
        nonlocal macs
        if isinstance(output, torch.Tensor):
            macs += output.numel() * (module.weight.numel() // module.weight.shape[0])
            produced[id(output)] = module
        ran.append(module)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = _forward(model, call)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    returned = _tensors(out)
    output_layers = [produced[id(t)] for t in returned if id(t) in produced]
    if ran and ran[-1] not in output_layers:
        output_layers.append(ran[-1])
    samples = _samples(call)
    params = sum(p.numel() for p in model.parameters())
    return params, macs // samples, [tuple(t.shape) for t in returned], output_layers


def widths_not_hidden(model: torch.nn.Module, call: Call, ignored: list[Any]) -> list[Any]:
    """The Linear layers of a model without convolutions whose outputs are not a hidden width:
    their channel group holds anything but Linear layers, element-wise ops and reshapes (a split
    into heads, a norm, an embedding), or cuts the outputs of more than one layer (a residual
    sum). Pruning leaves these layers' outputs whole."""
    import torch_pruning as tp
    from torch import nn

    training = model.training
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=call, forward_fn=_forward, verbose=False)
    model.train(training)
    # RESHAPE: a Linear layer on (batch, tokens, width) inputs flattens them around its matmul
    allowed = {tp.ops.OPTYPE.LINEAR, tp.ops.OPTYPE.ELEMENTWISE, tp.ops.OPTYPE.RESHAPE}
    keep: list[Any] = []
    for group in graph.get_all_groups(ignored_layers=list(ignored), root_module_types=[nn.Linear]):
        root = group[0].dep.target.module
        cut = [dep for dep, _ in group
               if isinstance(dep.target.module, nn.Linear) and graph.is_out_channel_pruning_fn(dep.handler)]
        if len(cut) != 1 or any(dep.target.type not in allowed for dep, _ in group):
            keep.append(root)
    return keep


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


def _tensors(value: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _samples(call: Call) -> int:
    tensors = _tensors(list(call[0]) + list(call[1].values()))
    return max(1, tensors[0].shape[0]) if tensors and tensors[0].dim() else 1


def _short(count: int) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)


@hookimpl
def register_knobs(register):
    register(StructuredPruning())
