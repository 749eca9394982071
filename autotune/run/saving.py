"""A trained model written to a file and read back: what `autotune trial run --save-model PATH`
writes, and what an inference study serves (autotune.inference).

The file (autotune.run.model_file: JSON and tensors, read with `weights_only=True`) holds the
format tag, the workload it was trained on (the spec `load_workload` takes), the settings it was
trained with, the metric and what its last validation measured, and the weights as a
`state_dict` (on the CPU). It holds no code: loading rebuilds the model through the workload, a
fresh `workload.model_fn()` with the weights loaded strictly. The workload is named, not carried:
its code (a registered workload, or a `module:function` import path) must be on the machine that
loads the file.

When the trained model's tensors no longer have the shapes of a fresh model's (structured_pruning
removed channels, so its layers are narrower), the file says so (`structure = "reshaped"`);
loading then gives the fresh model's tensors the saved shapes before the weights load. Either way
the file keeps the plain attributes (numbers, strings, tuples) in which a layer of the trained
model differs from a fresh one's (`out_channels`, `num_features`, a LayerNorm's
`normalized_shape`) and sets them on load. Masks a knob left on (torch.nn.utils.prune) are folded
into the weights they mask.

A file of the first format that pickled the module itself (`structure = "module"`) is refused
unless trusted (--trust-pickle); trusted, its module is served as it was, and `current` turns it
into this format.
"""

from __future__ import annotations

import copy
import os
from typing import TYPE_CHECKING, Any

import torch

from autotune.errors import RunError, UsageError
from autotune.run.model_file import TRUST_OPTION, WEIGHTS, read_model_file, write_model_file

if TYPE_CHECKING:
    from autotune.workloads import Workload

FORMAT = "autotune-model/2"
FIRST_FORMAT = "autotune-model/1"  # torch.save of the description and tensors side by side
STATE_DICT, RESHAPED = "state_dict", "reshaped"
MODULE = "module"  # the first format's pickled module: read only from a trusted file
NOT_OURS = "a model saved by autotune (write one with `autotune trial run --save-model`)"
_PLAIN = (bool, int, float, str, type(None))
_ABSENT = object()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model a knob wrapped: torch.compile's OptimizedModule keeps it as `_orig_mod`,
    DistributedDataParallel as `module` (compile wraps DDP when both apply)."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, DistributedDataParallel):
            inner = model.module
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def workload_spec(workload: "Workload") -> str:
    """What `load_workload` builds this workload from: its spec, else its name."""
    return (workload.origin or {}).get("spec") or workload.name


def _fresh(workload: "Workload") -> torch.nn.Module | None:
    """A fresh `workload.model_fn()`, built on the meta device where it can be (nothing
    allocated); None when it cannot be built."""
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                return workload.model_fn()
        except Exception:
            continue
    return None


def _unmasked_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` with torch.nn.utils.prune's masks folded in: `weight` is
    `weight_orig * weight_mask`, and those two are gone, so the names are a fresh model's."""
    from torch.nn.utils import prune

    state = model.state_dict()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for hook in module._forward_pre_hooks.values():  # where torch.nn.utils.prune keeps its methods
            if isinstance(hook, prune.BasePruningMethod):
                tensor = hook._tensor_name
                state.pop(f"{prefix}{tensor}_orig", None)
                state.pop(f"{prefix}{tensor}_mask", None)
                state[f"{prefix}{tensor}"] = hook.apply_mask(module)
    return state


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def _changed_attributes(model: torch.nn.Module, fresh: torch.nn.Module) -> dict[str, dict[str, Any]]:
    """Layer name -> the plain public attributes in which `model`'s layer differs from `fresh`'s."""
    fresh_modules = dict(fresh.named_modules())
    changed: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        other = fresh_modules.get(name)
        if other is None:
            continue
        attrs = {attr: value for attr, value in vars(module).items()
                 if not attr.startswith("_") and attr != "training" and _plain(value)
                 and getattr(other, attr, _ABSENT) != value}
        if attrs:
            changed[name] = attrs
    return changed


def weights(model: torch.nn.Module, workload: "Workload") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of `model` (unwrapped, on the CPU) and how to rebuild its structure from a
    fresh workload model: `structure`, `layers` (changed attributes) and, when reshaped, a
    `note`. ValueError when its tensors are named otherwise than a fresh model's: it could not
    be rebuilt from the workload."""
    model = unwrap(model)
    state = {k: v.detach().to("cpu", copy=True) for k, v in _unmasked_state(model).items()}
    fresh = _fresh(workload)
    layout: dict[str, Any] = {"structure": STATE_DICT, "layers": {}}
    if fresh is None:  # cannot compare: loading will build it, or say why not
        return state, layout
    layout["layers"] = _changed_attributes(model, fresh)
    expected = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if set(expected) != set(shapes):
        odd = sorted(set(expected) ^ set(shapes))
        raise ValueError(f"its tensors are not named as a fresh {workload.name} model's ({len(odd)} differ, e.g. "
                         f"{', '.join(odd[:3])}), so it could not be rebuilt from the workload")
    changed = sorted(k for k in shapes if expected[k] != shapes[k])
    if changed:
        layout["structure"] = RESHAPED
        layout["note"] = (f"the trained model's parameters differ from a fresh {workload.name} model's "
                          f"({len(changed)} of them, e.g. {', '.join(changed[:3])}): loading gives a fresh "
                          "model's layers the saved shapes")
    return state, layout


def save_model(
    model: torch.nn.Module, path: str | os.PathLike[str], workload: "Workload", settings: dict[str, Any],
    metric: dict[str, Any], metrics: dict[str, float],
) -> dict[str, Any]:
    """Write `model` (unwrapped, weights on the CPU) with what it was trained on to `path`,
    atomically; returns its description (`describe`: no tensors)."""
    try:
        state, layout = weights(model, workload)
        info: dict[str, Any] = {
            "format": FORMAT, "workload": workload_spec(workload), "settings": dict(settings),
            "metric": dict(metric), "metrics": dict(metrics), "data_dir": (workload.origin or {}).get("data_dir"),
            **layout,
        }
        write_model_file(path, info, state)
    except Exception as exc:
        raise RunError(f"--save-model {path}: cannot save the model: {type(exc).__name__}: {exc}") from exc
    return describe(info)


def read_checkpoint(path: str | os.PathLike[str], trust_pickle: bool = False,
                    trust: str = TRUST_OPTION) -> dict[str, Any]:
    """The payload of a file `save_model` wrote: its description, the tensors under
    "state_dict". UsageError naming the file otherwise; PickleRefused (naming `trust`) for a
    file that needs pickle, unless `trust_pickle`."""
    label = f"--checkpoint {path}"
    payload = read_model_file(path, label, NOT_OURS, trust_pickle=trust_pickle, trust=trust)
    if payload.get("format") not in (FORMAT, FIRST_FORMAT) or not isinstance(payload.get(WEIGHTS), dict):
        raise UsageError(f"{label}: not {NOT_OURS}")
    return payload


def describe(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's description without its tensors or layers (for reports and trial attributes)."""
    return {k: v for k, v in payload.items() if k not in (WEIGHTS, MODULE, "layers")}


def model_from(payload: dict[str, Any], workload: "Workload") -> torch.nn.Module:
    """The trained model a checkpoint holds, on the CPU in eval mode: a fresh
    `workload.model_fn()`, reshaped and with its changed attributes set as recorded, the saved
    weights loaded strictly (a trusted first-format file's pickled module: a copy of it)."""
    if payload.get("structure") == MODULE:
        return copy.deepcopy(payload[MODULE]).to("cpu").eval()
    model = workload.model_fn()
    state = payload[WEIGHTS]
    try:
        if payload.get("structure") == RESHAPED:
            _reshape(model, state)
        _set_attributes(model, payload.get("layers") or {})
        model.load_state_dict(state)
    except (RuntimeError, AttributeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"the checkpoint's weights do not fit workload '{workload.name}''s model: {first}") from None
    return model.to("cpu").eval()


def _reshape(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give each tensor of `model` whose shape differs from the saved one's an empty tensor of
    the saved shape (tied tensors stay tied), for `load_state_dict` to fill."""
    replaced: dict[int, torch.Tensor] = {}
    for key, have in model.state_dict(keep_vars=True).items():
        saved = state.get(key)
        if saved is None or tuple(saved.shape) == tuple(have.shape):
            continue
        if id(have) not in replaced:
            empty = torch.empty(tuple(saved.shape), dtype=have.dtype, device=have.device)
            replaced[id(have)] = (torch.nn.Parameter(empty, requires_grad=have.requires_grad)
                                  if isinstance(have, torch.nn.Parameter) else empty)
        owner, _, name = key.rpartition(".")
        setattr(model.get_submodule(owner), name, replaced[id(have)])


def _set_attributes(model: torch.nn.Module, layers: dict[str, dict[str, Any]]) -> None:
    """Set each layer's recorded attributes (public names only); JSON's lists become tuples
    where the fresh layer holds a tuple."""
    for name, attrs in layers.items():
        module = model.get_submodule(name)
        for attr, value in attrs.items():
            if not attr.isidentifier() or attr.startswith("_") or attr == "training" or not _plain(value):
                raise ValueError(f"layer '{name}': attribute {attr!r} is not one a checkpoint sets")
            if isinstance(getattr(module, attr, None), tuple):
                value = _tuples(value)
            setattr(module, attr, value)


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def current(payload: dict[str, Any], workload: "Workload") -> dict[str, Any]:
    """`payload` in this format: a first-format one's model rebuilt (its pickled module, if
    trusted) and its tensors and layers taken again."""
    if payload.get("format") == FORMAT:
        return payload
    state, layout = weights(model_from(payload, workload), workload)
    kept = {k: v for k, v in describe(payload).items() if k not in ("structure", "note")}
    return {**kept, "format": FORMAT, **layout, WEIGHTS: state}


def write_checkpoint(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a payload of this format (`current`) to `path`, atomically."""
    write_model_file(path, {k: v for k, v in payload.items() if k not in (WEIGHTS, MODULE)}, payload[WEIGHTS])
