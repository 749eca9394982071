"""activation_checkpointing: keep only the inputs of the model's blocks through the forward pass
and recompute the rest in backward (torch.utils.checkpoint, non-reentrant), trading compute for
activation memory so that larger batches fit.

Which blocks: the modules the workload names (`Workload.checkpoint_modules`, qualified names),
else those of the model's largest `nn.Sequential` or `nn.ModuleList` of 2+ children (the one
holding the most modules; the model itself when it is a Sequential). A ModuleList's children
are checkpointed one by one (its owner's forward calls them). A Sequential's children are cut
into about sqrt(n), at least 2, contiguous segments, as `checkpoint_sequential` does: a segment
keeps only its input, and checkpointing single layers would save nothing (a Linear keeps its
input anyway, a ReLU its output, which is the next layer's input). Modules are wrapped in place
(their `forward`), so parameter names and state dicts do not change. A model with no such
blocks and no names is left as it is, and the notes say why.

BatchNorm inside a block would update its running statistics a second time when the block is
recomputed; those recomputations run with the statistics put back as they were.

Memory saved: at FIT_END (outside the timed training) one forward of the workload's loss on the
first rows of the first training batch runs with and without checkpointing under
`saved_tensors_hooks`, counting the storages held for backward (the tensors autograd saves plus
the inputs each checkpoint keeps; parameters and buffers not counted). Those bytes per sample
land in the notes. On CUDA the run's own peak memory is the other measure, compared between
trials.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from autotune import Event, Knob, Param, RunError, TrainingPlan, hookimpl

# Rows of the first training batch the memory is measured on: few enough that measuring without
# checkpointing cannot run out of the memory checkpointing saved, and 2+ for BatchNorm1d.
MEASURED_ROWS = 8

# Read by the wrappers on every call: "off" runs blocks plainly (to measure without
# checkpointing), "held" collects the inputs a checkpoint keeps while memory is measured.
_MODE: dict[str, Any] = {"off": False, "held": None}


class ActivationCheckpointing(Knob):
    name = "activation_checkpointing"
    help = "recompute the activations of the model's blocks in backward instead of keeping them"
    kind = "systems"

    def params(self, hardware):
        return [Param("activation_checkpointing", "bool")]

    def baseline(self, hardware):
        return {"activation_checkpointing": False}

    def apply(self, settings, plan: TrainingPlan):
        if not settings["activation_checkpointing"]:
            return
        names = plan.workload.checkpoint_modules
        names = (names,) if isinstance(names, str) else tuple(names or ())
        run: dict[str, Any] = {"model": None, "sample": None}

        def wrap(model):
            units, reason = _blocks(model, names, plan.workload.name)
            if not units:
                plan.notes["activation_checkpointing"] = f"not applied: {reason}"
                return None
            for module, segments in {id(m): (m, s) for _, m, s in units}.values():
                _checkpoint(module, segments)
            run["model"] = model
            plan.notes["activation_checkpointing_blocks"] = [label for label, _, _ in units]
            return None

        def keep_sample(state, batch, step):
            if run["model"] is not None and run["sample"] is None:
                run["sample"] = _first_rows(batch, MEASURED_ROWS)
            return step(batch)

        def measure(state):
            if run["model"] is not None and run["sample"] is not None:
                state.notes["activation_checkpointing_memory"] = _measure(state, run["model"], run["sample"])

        # before data_parallel (80) and torch_compile (90) wrap the model, after pruning (10)
        # and channels_last (20) change its weights
        plan.transform_model(wrap, order=30)
        if plan.own_loop:  # no STEP fires in your own loop: nothing gives the sample to measure on
            plan.notes["activation_checkpointing_memory"] = "not measured: your own loop runs the steps"
            return
        plan.on(Event.STEP, keep_sample)
        plan.on(Event.FIT_END, measure)


def _blocks(model, names: tuple[str, ...], workload: str) -> tuple[list[tuple[str, Any, Any]], str]:
    """[(label, module, segments)] to checkpoint, and why there are none when the list is empty.
    `segments` is None for a module checkpointed whole, else the (start, stop) children ranges
    of a Sequential checkpointed one range at a time (one entry per range, the same module)."""
    from torch import nn

    if names:
        units = []
        for name in names:
            try:
                module = model.get_submodule(name)
            except AttributeError:
                raise RunError(
                    f"workload '{workload}': checkpoint_modules names '{name}', which its model "
                    f"({type(model).__name__}) does not have"
                ) from None
            if type(module).forward is nn.Module.forward:
                raise RunError(
                    f"workload '{workload}': checkpoint_modules names '{name}', a "
                    f"{type(module).__name__} with no forward of its own: name its blocks ('{name}.0', ...)"
                )
            units.append((name, module, None))
        return units, ""
    containers = [
        (name, module) for name, module in model.named_modules()
        if isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) >= 2
    ]
    if not containers:
        return [], (
            f"the model ({type(model).__name__}) has no nn.Sequential or nn.ModuleList of 2+ blocks, "
            "and the workload names no checkpoint_modules"
        )
    name, container = max(containers, key=lambda item: sum(1 for _ in item[1].modules()))
    if isinstance(container, nn.ModuleList):
        return [(f"{name}.{index}" if name else str(index), child, None) for index, child in enumerate(container)], ""
    count = len(container)
    pieces = min(count, max(2, round(math.sqrt(count))))
    bounds, start = [], 0
    for index in range(pieces):
        stop = start + count // pieces + (1 if index < count % pieces else 0)
        bounds.append((start, stop))
        start = stop
    return [(f"{name}[{a}:{b}]", container, tuple(bounds)) for a, b in bounds], ""


def _checkpoint(module, segments) -> None:
    """Make `module`'s forward checkpointed: whole, or one children range at a time. A
    functools.partial of the module (not a closure over its bound method) so that a deep copy of
    the model (an EMA of the weights) runs its own copy."""
    if segments is None:
        module.forward = functools.partial(_checkpointed_forward, module)
    else:
        module.forward = functools.partial(_segmented_forward, module, segments)


def _checkpointed_forward(module, *args, **kwargs):
    forward = functools.partial(type(module).forward, module)
    return _run(forward, [module], args, kwargs)


def _segmented_forward(module, segments, x):
    children = list(module)
    for start, stop in segments:
        x = _run(functools.partial(_run_children, children[start:stop]), children[start:stop], (x,), {})
    return x


def _run_children(children, x):
    for child in children:
        x = child(x)
    return x


def _run(fn, modules, args, kwargs):
    """`fn(*args, **kwargs)`, checkpointed while training with gradients."""
    import torch
    from torch.utils.checkpoint import checkpoint

    if _MODE["off"] or not torch.is_grad_enabled():
        return fn(*args, **kwargs)
    if _MODE["held"] is not None:
        from autotune.batches import tensors

        for tensor in tensors((args, kwargs)):
            _MODE["held"](tensor)
    norms = [m for root in modules for m in root.modules() if _tracks_statistics(m)]
    if not norms:
        return checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return checkpoint(
        fn, *args, use_reentrant=False, context_fn=functools.partial(_keep_statistics, norms), **kwargs
    )


def _tracks_statistics(module) -> bool:
    from torch import nn

    return isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats


def _keep_statistics(norms):
    """(forward context, recomputation context): the recomputation puts the norms' running
    statistics back as the forward left them."""
    import contextlib

    return contextlib.nullcontext(), _RestoredBuffers(norms)


class _RestoredBuffers:
    def __init__(self, modules) -> None:
        self.modules = modules
        self.saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> None:
        self.saved = [(b, b.clone()) for m in self.modules for b in m.buffers(recurse=False)]

    def __exit__(self, *exc: Any) -> None:
        for buffer, value in self.saved:
            buffer.copy_(value)
        self.saved = []


def _first_rows(batch, rows: int):
    """A copy of the first `rows` samples of `batch` (copies: a view would keep, and be counted
    as, the whole batch)."""
    from autotune import batches

    size = batches.batch_size(batch)
    return batches.map_tensors(
        batch, lambda t: t[:rows].clone() if t.dim() > 0 and t.shape[0] == size else t.clone()
    )


def _measure(state, model, sample) -> dict[str, Any] | str:
    """Bytes held for backward per sample, without and with checkpointing; the model's
    parameters, buffers and the random number generators are left as they were."""
    import torch

    from autotune import batches

    rows = batches.batch_size(sample)
    saved = [(b, b.clone()) for b in model.buffers()]
    devices = []
    if state.device.type == "cuda":
        devices = [torch.cuda.current_device() if state.device.index is None else state.device.index]
    try:
        with torch.random.fork_rng(devices=devices):
            _MODE["off"] = True
            try:
                without = _held_bytes(state, model, sample)
            finally:
                _MODE["off"] = False
            with_checkpoints = _held_bytes(state, model, sample)
    except Exception as exc:  # a measurement must not fail the run it describes
        return f"not measured: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
    return {
        "rows": rows,
        "bytes_per_sample_without": round(without / rows),
        "bytes_per_sample_with": round(with_checkpoints / rows),
        "saved_fraction": round(1 - with_checkpoints / without, 4) if without else 0.0,
    }


def _held_bytes(state, model, sample) -> int:
    """Bytes of the distinct storages held for backward by one forward of the loss on `sample`."""
    import torch

    own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    held: dict[int, int] = {}

    def count(tensor) -> None:
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensor subclasses without storage
            return
        if storage.data_ptr() not in own:
            held[storage.data_ptr()] = storage.nbytes()

    def pack(tensor):
        count(tensor)
        return tensor

    _MODE["held"] = count
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with state.autocast():
                loss = state.train_step(model, sample)
        del loss
    finally:
        _MODE["held"] = None
    return sum(held.values())


@hookimpl
def register_knobs(register):
    register(ActivationCheckpointing())
