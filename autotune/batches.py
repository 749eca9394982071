"""Batches of any structure: tensors nested in tuples, lists, dicts, named tuples and dataclasses.

The engine moves, measures and splits batches through these functions, so a workload whose
batches are dicts (`{"input_ids": ..., "labels": ...}`) or dataclasses trains like one whose
batches are `(inputs, targets)`. The first dimension of every tensor is the batch dimension.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch


def map_tensors(batch: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """`batch` with `fn` applied to every tensor in it, the structure kept."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return type(batch)((k, map_tensors(v, fn)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(map_tensors(v, fn) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(map_tensors(v, fn) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {f.name: map_tensors(getattr(batch, f.name), fn) for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **changes)
    return batch


def tensors(batch: Any) -> list[torch.Tensor]:
    """Every tensor in `batch`, in order."""
    found: list[torch.Tensor] = []
    map_tensors(batch, found.append)
    return found


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    return map_tensors(batch, lambda t: t.to(device, non_blocking=non_blocking))


def batch_size(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (1 for a batch without one)."""
    for tensor in tensors(batch):
        if tensor.dim() > 0:
            return int(tensor.shape[0])
    return 1


def split(batch: Any, parts: int) -> list[Any]:
    """Cut a batch into at most `parts` micro-batches along the first dimension, as equal as they
    can be (torch.tensor_split); tensors without a batch dimension are shared by every part."""
    size = batch_size(batch)
    parts = max(1, min(parts, size))
    pieces: list[Any] = []
    for index in range(parts):
        def take(tensor: torch.Tensor, index: int = index) -> torch.Tensor:
            if tensor.dim() == 0 or tensor.shape[0] != size:
                return tensor
            return torch.tensor_split(tensor, parts)[index]

        pieces.append(map_tensors(batch, take))
    return pieces
