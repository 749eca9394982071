"""Workloads: what is trained (model, data, loss, metric) and its untuned baseline recipe.

A workload is named by a registered name (`digits`) or an import path `package.module:function`
whose function returns a `Workload`. The built-ins (autotune.plugins.workloads.catalog) register through
the `register_workloads` hook like any plugin's.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset

from autotune.errors import RunError, UsageError
from autotune.knob import Traits
from autotune.metrics import Metric

if TYPE_CHECKING:
    from autotune.registry import Registry

# The common tutorial recipe (PyTorch's CIFAR-10 tutorial and most course notebooks).
TUTORIAL_BASELINE: dict[str, Any] = {
    "batch_size": 64,
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "momentum": 0.9,
    "precision": "fp32",
    "workers": 0,
    "pruning": 0.0,
}


def accuracy_count(outputs: torch.Tensor, targets: torch.Tensor) -> int:
    """Number of correct top-1 predictions in a batch."""
    return int((outputs.argmax(dim=1) == targets).sum().item())


@dataclass
class Workload:
    """A model, its data, how a step's loss is computed and how a model is judged.

    `model_fn` builds a fresh model so every run starts equal. Batches may be any structure of
    tensors (a tuple, a dict, a dataclass); the first dimension of each is the batch.

    `train_step(model, batch) -> loss`: the loss to minimise for one batch, already on the device
    (default: `loss_fn(model(batch[0]), batch[1])`). `evaluate(model, batches) -> {name: value}`:
    the validation metrics over an iterable of batches, each the mean over the samples it saw;
    the engine has put the model in eval mode under no_grad and the run's autocast (default:
    `val_loss` with `loss_fn` and `accuracy` with `metric_fn`). `metric` names the primary metric,
    the one targets, pruning, confirmation and reports judge by; `direction` ("minimize" or
    "maximize") says which way is better, inferred from the name when None (a loss, perplexity
    or error is lower-is-better). docs/workloads.md is the full contract.
    """

    name: str
    model_fn: Callable[[], nn.Module]
    train_data: Dataset
    val_data: Dataset
    loss_fn: Callable[..., torch.Tensor] = field(default_factory=nn.CrossEntropyLoss)
    metric_fn: Callable[[torch.Tensor, torch.Tensor], int] = accuracy_count
    metric: str = "accuracy"
    baseline: dict[str, Any] = field(default_factory=lambda: dict(TUTORIAL_BASELINE))
    description: str = ""
    input_shape: tuple[int, ...] | None = None
    train_step: Callable[[nn.Module, Any], torch.Tensor] | None = None
    evaluate: Callable[[nn.Module, Iterable[Any]], dict[str, float]] | None = None
    direction: str | None = None
    # What one sample holds, for throughput in those units: {"tokens": 256} reports tokens_per_s
    units_per_sample: dict[str, int] = field(default_factory=dict)
    # Submodules (qualified names) the activation_checkpointing knob checkpoints; () lets it find the blocks
    checkpoint_modules: tuple[str, ...] = ()

    @property
    def primary_metric(self) -> Metric:
        return Metric.named(self.metric, self.direction)

    def traits(self) -> Traits:
        """Whether the model has convolutions and the batches images (Knob.needs), from one model
        built (on the meta device when it can be) and `input_shape`, or one training sample read;
        unknown (nothing left out for it) when either fails."""
        if self._traits is None:
            if self.input_shape is not None:
                images: bool | None = len(self.input_shape) == 3  # (C, H, W): batches are 4-D
            else:
                images = _image_inputs(self.train_data)
            self._traits = Traits(convolutional=_convolutional(self.model_fn), image_inputs=images)
        return self._traits
    # How load_workload built it ({"spec", "data_dir"}), so another process can build it again.
    # Not an init field: dataclasses.replace() drops it, since a changed copy is not what the
    # spec builds.
    origin: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _traits: Traits | None = field(default=None, init=False, repr=False, compare=False)


CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _convolutional(model_fn: Callable[[], nn.Module]) -> bool | None:
    try:
        with torch.device("meta"):  # no memory, no initialisation cost
            model = model_fn()
    except Exception:
        try:
            model = model_fn()
        except Exception:
            return None
    try:
        return any(isinstance(m, CONVOLUTIONS) for m in model.modules())
    except Exception:
        return None


def _image_inputs(data: Any) -> bool | None:
    """Whether a training sample holds a 3-D (C, H, W) tensor: batched, a 4-D image batch."""
    from autotune.batches import tensors

    try:
        sample = data[0] if hasattr(data, "__getitem__") and hasattr(data, "__len__") else next(iter(data))
        return any(t.dim() == 3 for t in tensors(sample))
    except Exception:
        return None


def importable_from(workdir: str | os.PathLike[str] | None) -> None:
    """Let `module:function` import paths name modules in `workdir` (default: the current folder),
    as `python -m` would. The folder goes after the installed packages, so a folder there named
    like one (an `autotune/` checkout, say) cannot shadow it."""
    path = os.path.abspath(workdir if workdir is not None else os.getcwd())
    if path not in (os.path.abspath(p) for p in sys.path if p):
        sys.path.append(path)


def resolve_factory(spec: str, registry: "Registry", workdir: str | None = None) -> Callable[..., Workload]:
    """Find a workload factory by registered name or `package.module:function` import path; an
    import path may name a module in `workdir` (default: the current folder)."""
    if ":" not in spec:
        try:
            return registry.workloads[spec]
        except KeyError:
            raise UsageError(
                f"unknown workload '{spec}' (known: {', '.join(registry.workloads)}; "
                f"or give an import path package.module:function)"
            ) from None
    module_name, _, attr = spec.partition(":")
    importable_from(workdir)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"workload '{spec}': cannot import module '{module_name}': {type(exc).__name__}: {exc}"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"workload '{spec}': module '{module_name}' has no function '{attr}'")
    return factory


def load_workload(
    spec: str,
    registry: "Registry",
    data_dir: str | None = None,
    download: bool = False,
    workdir: str | None = None,
) -> Workload:
    """Build the workload `spec` names, passing only the options its factory accepts.

    UsageError when it cannot be built, or when its training or validation set is empty (a run
    would fail on its first step, or measure nothing).
    """
    factory = resolve_factory(spec, registry, workdir)
    options = {"data_dir": data_dir, "download": download}
    try:
        accepted = inspect.signature(factory).parameters
        kwargs = {k: v for k, v in options.items() if k in accepted}
    except (TypeError, ValueError):
        kwargs = {}
    try:
        workload = factory(**kwargs)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"workload '{spec}': factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(workload, Workload):
        raise UsageError(f"workload '{spec}': factory returned {type(workload).__name__}, not a Workload")
    for label, data in (("training", workload.train_data), ("validation", workload.val_data)):
        size = dataset_size(data)
        if size == 0:
            raise UsageError(f"workload '{spec}': its {label} set is empty")
    workload.primary_metric  # a bad direction is a usage error now, not in every trial
    workload.origin = {"spec": spec, "data_dir": data_dir, "workdir": workdir}
    return workload


def script_workload(name: str, model: nn.Module | None = None, loss_fn: Any = None) -> Workload:
    """The Workload that stands for a model trained by the user's own code (autotune.apply, a
    --script trial): no datasets, the common tutorial recipe as its baseline, `Traits.own_loop`
    (knobs that need autotune's loop or data are left out). With `model`, knobs can tell what it
    is like (Knob.needs); without, nothing else is left out for it."""
    def model_fn() -> nn.Module:
        if model is None:
            raise RunError("a script's model is built by the script")
        return model

    workload = Workload(
        name=name, model_fn=model_fn, train_data=None, val_data=None,  # type: ignore[arg-type]
        loss_fn=loss_fn or nn.CrossEntropyLoss(),
    )
    # the user's loop trains it: knobs that need autotune's loop or its data are left out
    convolutional = _convolutional(model_fn) if model is not None else None
    workload._traits = Traits(convolutional=convolutional, image_inputs=None, own_loop=True)
    return workload


def dataset_size(data: Any) -> int | None:
    """len(data) for a sized dataset; None for one without a length (an IterableDataset)."""
    try:
        return len(data)
    except TypeError:
        return None
