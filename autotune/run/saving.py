"""A trained model written to a file and read back: what `autotune trial run --save-model PATH`
writes, and what an inference study serves (autotune.inference).

The file is one `torch.save` of a dict: the format tag, the workload it was trained on (the spec
`load_workload` takes), the settings it was trained with, the metric and what its last validation
measured, and the weights as a `state_dict` (on the CPU). When the trained model's parameters
no longer have the names and shapes of a fresh `workload.model_fn()` (structured_pruning removed
channels, so its layers are narrower; a knob that left pruning masks renamed `weight` to
`weight_orig`), that state_dict would not load into the model the workload builds: the file then
also holds the module itself, pickled, and says so (`structure = "module"`). Loading such a file
runs pickle: load only files you trust.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autotune.errors import RunError, UsageError

if TYPE_CHECKING:
    from autotune.workloads import Workload

FORMAT = "autotune-model/1"
STATE_DICT, MODULE = "state_dict", "module"


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


def fresh_shapes(workload: "Workload") -> dict[str, tuple[int, ...]] | None:
    """Parameter and buffer names and shapes of a fresh `workload.model_fn()` (built on the meta
    device, so nothing is allocated); None when it cannot be built there."""
    try:
        with torch.device("meta"):
            model = workload.model_fn()
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}
    except Exception:
        return None


def workload_spec(workload: "Workload") -> str:
    """What `load_workload` builds this workload from: its spec, else its name."""
    return (workload.origin or {}).get("spec") or workload.name


def save_model(
    model: torch.nn.Module, path: str | os.PathLike[str], workload: "Workload", settings: dict[str, Any],
    metric: dict[str, Any], metrics: dict[str, float],
) -> dict[str, Any]:
    """Write `model` (unwrapped, weights on the CPU) with what it was trained on to `path`,
    atomically; returns the description written beside the weights (no tensors)."""
    model = unwrap(model)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    expected = fresh_shapes(workload)
    info: dict[str, Any] = {
        "format": FORMAT, "workload": workload_spec(workload), "settings": dict(settings),
        "metric": dict(metric), "metrics": dict(metrics), "structure": STATE_DICT,
        "data_dir": (workload.origin or {}).get("data_dir"),
    }
    payload: dict[str, Any] = {**info, "state_dict": state}
    if expected != shapes:
        changed = sorted(k for k in set(expected or {}) | set(shapes) if (expected or {}).get(k) != shapes.get(k))
        info["structure"] = payload["structure"] = MODULE
        info["note"] = payload["note"] = (
            f"the trained model's parameters differ from a fresh {workload.name} model's "
            f"({len(changed)} of them, e.g. {', '.join(changed[:3])}): the module itself is saved, pickled"
        )
        was_training = model.training
        module = model.to("cpu").eval()
        payload[MODULE] = module
        model.train(was_training)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise RunError(f"--save-model {path}: cannot save the model: {type(exc).__name__}: {exc}") from exc
    return info


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The payload of a file `save_model` wrote; UsageError naming the file otherwise."""
    target = Path(path)
    if not target.is_file():
        raise UsageError(f"--checkpoint {path}: no such file")
    try:
        # not weights_only: a structured-pruned model's file holds the pickled module
        payload = torch.load(target, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UsageError(f"--checkpoint {path}: cannot read it: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UsageError(
            f"--checkpoint {path}: not a model saved by autotune (write one with `autotune trial run --save-model`)"
        )
    return payload


def describe(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's description without its tensors (for reports and trial attributes)."""
    return {k: v for k, v in payload.items() if k not in (STATE_DICT, MODULE)}


def model_from(payload: dict[str, Any], workload: "Workload") -> torch.nn.Module:
    """The trained model a checkpoint holds, on the CPU in eval mode: the pickled module, or a
    fresh `workload.model_fn()` with the saved weights loaded (strictly)."""
    if payload.get("structure") == MODULE:
        model = payload[MODULE]
    else:
        model = workload.model_fn()
        try:
            model.load_state_dict(payload[STATE_DICT])
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise RunError(f"the checkpoint's weights do not fit workload '{workload.name}''s model: {first}") from None
    return model.to("cpu").eval()
