"""Use a tuned configuration in your own training script, through the same knob code.

    import autotune

    tuned = autotune.apply("best.toml", model)           # or a dict of settings
    loader = tuned.dataloader(train_dataset, shuffle=True)
    for inputs, targets in loader:
        inputs, targets = tuned.to_device(inputs, targets)
        with tuned.autocast():
            loss = loss_fn(tuned.model(inputs), targets)
        tuned.step(loss)
    tuned.close()

Every knob's `apply` edits a TrainingPlan exactly as in a trial; this module turns the plan into
the objects a hand-written loop needs.

data_parallel=ddp needs one process per device, which a script starts itself: run it under
`torchrun --nproc-per-node N` and call `torch.distributed.init_process_group()` (and, on CUDA,
`torch.cuda.set_device(local_rank)`) before `apply`. The model then comes back wrapped in
DistributedDataParallel, `dataloader()` shards the data (call `loader.sampler.set_epoch(epoch)`
each epoch) and `batch_size` is this process's share of the global batch.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from autotune.knob import exclusion
from autotune.settings import load_config_file, resolve_settings, settings_index
from autotune.run.local import build_plan
from autotune.hardware import Hardware, detect
from autotune.errors import UsageError
from autotune.run.loop_state import autocast, optimizer_step
from autotune.run.plan import Rank, TrainingPlan
from autotune.run.collective import backend_for
from autotune.registry import Registry, load_registry
from autotune.workloads import script_workload


class Tuned:
    """A model, optimizer and loop helpers configured by the knobs' settings."""

    def __init__(self, plan: TrainingPlan, model: torch.nn.Module, settings: dict[str, Any]) -> None:
        self.plan = plan
        self.settings = settings
        self.device = plan.device
        model = model.to(plan.device)
        for _, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
            result = fn(model)
            model = model if result is None else result
        self.model = model
        assert plan.optimizer_factory is not None
        self.optimizer = plan.optimizer_factory(model.parameters(), **plan.optimizer_kwargs)
        self.scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.grad_scaler)
        self.batch_size = plan.batch_size

    def dataloader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        """A DataLoader with the tuned batch size and loader settings (yours win).

        Under data_parallel=ddp each process gets its own shard through a DistributedSampler
        (`shuffle` goes to the sampler), unless you pass a sampler.
        """
        options = {"batch_size": self.plan.batch_size, **self.plan.loader, **kwargs}
        rank = self.plan.rank
        if rank is not None and "sampler" not in options:
            options["sampler"] = DistributedSampler(
                dataset, num_replicas=rank.world_size, rank=rank.rank, shuffle=bool(options.pop("shuffle", False))
            )
        return DataLoader(dataset, **options)

    def to_device(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        non_blocking = bool(self.plan.loader.get("pin_memory"))
        inputs = inputs.to(self.device, non_blocking=non_blocking)
        for fn in self.plan.input_transforms:
            inputs = fn(inputs)
        return inputs, targets.to(self.device, non_blocking=non_blocking)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.plan)

    def step(self, loss: torch.Tensor) -> None:
        """Backward, gradient hooks (e.g. pruning masks), optimizer step, zero_grad."""
        self.scaler.scale(loss).backward()
        optimizer_step(self.plan, self.model, self.optimizer, self.scaler)

    def close(self) -> None:
        """Undo process-wide changes (thread count, cudnn.benchmark)."""
        for cleanup in self.plan.cleanups:
            cleanup()
        self.plan.cleanups.clear()

    def __enter__(self) -> "Tuned":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def apply(
    config: str | Path | dict[str, Any],
    model: torch.nn.Module,
    *,
    device: str | None = None,
    plugin_paths: tuple[str, ...] = (),
    loss_fn: Any = None,
) -> Tuned:
    """Configure `model` (and its optimizer, loader, precision) with a tuned configuration.

    `config` is a file from `autotune study export` (TOML or JSON) or a dict of settings.
    Settings not given keep the built-in baseline recipe.
    """
    settings = load_config_file(config)["settings"] if isinstance(config, (str, Path)) else dict(config)
    registry = load_registry(plugin_paths=plugin_paths)
    plan = plan_for(settings, model, registry=registry, device=device, loss_fn=loss_fn)
    return Tuned(plan, model, plan.extras["settings"])


def plan_for(
    settings: dict[str, Any],
    model: torch.nn.Module,
    *,
    registry: Registry | None = None,
    hardware: Hardware | None = None,
    device: str | None = None,
    loss_fn: Any = None,
) -> TrainingPlan:
    """The plan the knobs make of `settings` (resolved over the baseline, kept in
    `plan.extras["settings"]`) for `model`, as `apply` and the session API use it.

    A setting of a knob that does nothing for this model (channels_last on an MLP: a study of a
    script cannot see the model before its trials) is left out and says so in `plan.notes`."""
    registry = registry or load_registry()
    hardware = hardware or detect((device or "").split(":")[0] or None)
    workload = script_workload("user", model, loss_fn)
    index = settings_index(registry, hardware)
    unsuited = {}
    for key, value in settings.items():
        knob = index[key][0] if key in index else None
        reason = exclusion(knob, hardware, workload.traits()) if knob is not None else None
        if reason is not None and value != knob.baseline(hardware).get(key):
            unsuited[key] = f"{key}={value} not applied: {reason}"
    resolved = resolve_settings(registry, hardware, workload, {k: v for k, v in settings.items() if k not in unsuited})
    target = torch.device(device or hardware.device_type)
    plan = build_plan(registry, hardware, workload, resolved, target)
    plan.notes.update(unsuited)
    plan.extras["settings"] = resolved
    if plan.processes > 1:  # a knob wants one process per device, as the engine's launch pass
        for cleanup in plan.cleanups:
            cleanup()
        if not (dist.is_available() and dist.is_initialized()):
            raise UsageError(
                f"data_parallel=ddp: {plan.processes} processes, one per device, must be started "
                "by your script: run it with `torchrun --nproc-per-node N` and call "
                "torch.distributed.init_process_group() before autotune.apply()"
            )
        if target.type == "cuda" and target.index is None:
            target = torch.device("cuda", torch.cuda.current_device())
        rank = Rank(dist.get_rank(), dist.get_world_size(), backend_for(target.type))
        plan = build_plan(registry, hardware, workload, resolved, target, rank)
        plan.extras["settings"] = resolved
    return plan
