"""What a served model is called with, made from the workload's validation data: a batch of any
size (a sample repeated when the set is smaller), and the model's arguments for it.

For the default step (`Workload.train_step` None) the model takes `batch[0]`; otherwise the
arguments are captured from one forward of the workload's own `train_step` on that batch (eval
mode, no gradients), as structured_pruning captures them: the model of a dict-batch workload
(tinylm: `model(batch["input_ids"])`) is called as that workload calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch.utils.data import default_collate

from autotune import batches
from autotune.errors import RunError
from autotune.inference.plan import Call

if TYPE_CHECKING:
    from autotune.workloads import Workload


def samples(data: Any, start: int, count: int) -> list[Any]:
    """`count` samples of `data` from `start` on, wrapping around a set smaller than that; an
    iterable dataset (no len()) gives its first ones."""
    try:
        size = len(data)
    except TypeError:
        size = None
    if size:
        return [data[(start + i) % size] for i in range(count)]
    taken: list[Any] = []
    while len(taken) < count:
        before = len(taken)
        for sample in data:
            taken.append(sample)
            if len(taken) == count:
                break
        if len(taken) == before:
            break
    if not taken:
        raise RunError("the workload's validation set gave no samples")
    return taken


def batch_of(workload: "Workload", count: int, start: int = 0) -> Any:
    """A batch of `count` validation samples, collated as a DataLoader would."""
    return default_collate(samples(workload.val_data, start, count))


def model_call(workload: "Workload", model: torch.nn.Module, batch: Any, device: torch.device) -> Call:
    """What `model` is called with for `batch` (moved to `device`)."""
    batch = batches.to_device(batch, device, False)
    if workload.train_step is None:
        return (batch[0],), {}
    captured: list[Call] = []

    def grab(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if not captured:
            captured.append((args, kwargs))

    hook = model.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            workload.train_step(model, batch)
    finally:
        hook.remove()
    if not captured:
        raise RunError(f"workload '{workload.name}''s train_step never called its model")
    return captured[0]


def calls(workload: "Workload", model: torch.nn.Module, size: int, count: int, device: torch.device) -> Iterator[Call]:
    """The model's calls for the first `count` validation batches of `size` samples."""
    for i in range(count):
        yield model_call(workload, model, batch_of(workload, size, i * size), device)


def rows(call: Call) -> int:
    """The samples a call holds: the first dimension of its first tensor."""
    return batches.batch_size((call[0], call[1]))
