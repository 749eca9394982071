"""Structured (channel) pruning of a model in place, shared by the `structured_pruning` training
knob (before training) and the `serve_pruning` inference knob (a trained model, before serving).

The channels go with torch-pruning's dependency graph (DepGraph, Fang et al., CVPR 2023): removing
a convolution's output channel also removes what depends on it (the BatchNorm's entries, the next
layer's input channels, every layer tied to it by a residual sum), so the model stays consistent.
Which channels go: the lowest group L2 magnitude, the same fraction in every group (local
pruning), once.

What is pruned:
- a model with convolutions: every channel group, except those that reach the output layer;
- a model without (an MLP, a transformer): only hidden widths, the channels a Linear layer hands
  through element-wise ops (an activation) to other Linear layers alone: a transformer's MLP
  width. Attention is left whole: torch-pruning cuts heads safely only when told each qkv
  layer's head count, which an arbitrary model does not declare; the residual width is tied to
  the embeddings and the output layer.
The output layer (the last convolution or Linear layer to run, and any whose output is the
model's output) keeps its outputs, so the model's output shape does not change.

Torch and torch-pruning (the `prune` extra) are imported when a function runs, so importing this
module stays torch-free.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

Call = tuple[tuple[Any, ...], dict[str, Any]]  # the model's positional and keyword arguments
INSTALL = "pip install 'autotune[prune]'"


def unavailable() -> str | None:
    """Why the pruning knobs cannot run here: torch-pruning, an extra, is not installed."""
    if importlib.util.find_spec("torch_pruning") is None:
        return f"needs torch-pruning ({INSTALL})"
    return None


@dataclass(frozen=True)
class Pruned:
    """What `prune_channels` removed: each pair is (before, after). `channels_removed` sums the
    output channels (filters, Linear outputs) taken from every convolution and Linear layer."""

    parameters: tuple[int, int]
    macs_per_sample: tuple[int, int]
    layers_changed: int
    channels_removed: int
    convolutional: bool


def prune_channels(model: torch.nn.Module, fraction: float, call: Call, knob: str) -> Pruned:
    """Remove `fraction` of the channels of every prunable group of `model` in place (see the
    module docstring for which groups).

    `call` is what the model is called with, on its device. The model keeps its train/eval mode.
    Raises RuntimeError naming `knob` when torch-pruning fails or the model's output shape changed.
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
    widths_before = _widths(model)

    try:
        pruner = tp.pruner.BasePruner(
            model, call, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=fraction,
            ignored_layers=ignored, forward_fn=_forward, root_module_types=[*convolutions(), torch.nn.Linear],
        )
        pruner.step()
    except Exception as exc:  # torch-pruning traces arbitrary models: say whose failure it is
        raise RuntimeError(f"{knob}: torch-pruning could not prune {type(model).__name__}: "
                           f"{type(exc).__name__}: {exc}") from exc
    finally:
        model.train(training)  # tracing puts the model in eval mode

    after_params, after_macs, outputs_after, _ = measure(model, call)
    if outputs_after != outputs_before:
        raise RuntimeError(f"{knob} changed the model's output shape from {outputs_before} to {outputs_after}")
    changed = {name.rsplit(".", 1)[0] for name, p in model.named_parameters() if shapes.get(name) != p.shape}
    widths_after = _widths(model)
    removed = sum(width - widths_after.get(name, width) for name, width in widths_before.items())
    return Pruned(parameters=(before_params, after_params), macs_per_sample=(before_macs, after_macs),
                  layers_changed=len(changed), channels_removed=removed, convolutional=conv)


def _widths(model: torch.nn.Module) -> dict[str, int]:
    """Output channels of every convolution and Linear layer, by qualified name."""
    from torch import nn

    return {name: int(m.weight.shape[0]) for name, m in model.named_modules()
            if isinstance(m, (*convolutions(), nn.Linear))}


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


def short(count: int) -> str:
    """A parameter or MAC count for a note: 120478 -> '120k'."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)
