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
import gc
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from autotune.knob import OWN_LOOP_DATA, OWN_LOOP_STEPS, exclusion
from autotune.settings import load_config_file, resolve_settings, settings_index
from autotune.run.local import OWN_LOOP_UNFIRED, build_plan, unfired_reason
from autotune.hardware import Hardware, detect
from autotune.errors import Unsupported, UsageError
from autotune.run.evaluation import train_step_for
from autotune.run.loop import Inputs
from autotune.run.loop_events import Event
from autotune.run.loop_state import LoopState, autocast
from autotune.run.plan import Rank, TrainingPlan
from autotune.run.saving import unwrap
from autotune.run.collective import backend_for
from autotune.registry import Registry, load_registry
from autotune.workloads import script_workload


class Tuned:
    """A model, optimizer and loop helpers configured by the knobs' settings.

    The knobs' loop events fire as in autotune's own loop (LoopState.emit, the engine's code):
    FIT_START once before the first step, AFTER_STEP after each `step`, EPOCH_END when a
    training loader from `dataloader` runs out, AFTER_EVAL at `validated`, FIT_END at `close`.
    STEP and BEFORE_EVAL cannot fire (your loop does its forward and validation itself): a knob
    that hooks them is refused when the plan is built (autotune.run.local.apply_knobs)."""

    def __init__(
        self, plan: TrainingPlan, model: torch.nn.Module, settings: dict[str, Any], *,
        total_steps: int | None = None, start: bool = True,
    ) -> None:
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
        self.state = LoopState(plan=plan, model=model, optimizer=self.optimizer, scaler=self.scaler,
                               train_step=train_step_for(plan), total_steps=total_steps)
        self.inputs = Inputs(plan)
        self._started = self._ended = False
        if start:
            self.start()

    def start(self) -> None:
        """FIT_START, once (the first `step` calls it when nothing has): a knob sizes what it
        needs from `state.total_steps` (lr_schedule) or takes the starting weights."""
        if not self._started:
            self._started = True
            self.state.emit(Event.FIT_START)

    def dataloader(self, dataset: Dataset, train: bool = True, **kwargs: Any) -> Any:
        """A DataLoader with the tuned batch size and loader settings (yours win). A training one
        (`train=True`) fires EPOCH_END each time it runs out.

        Under data_parallel=ddp each process gets its own shard through a DistributedSampler
        (`shuffle` goes to the sampler), unless you pass a sampler.
        """
        options = {"batch_size": self.plan.batch_size, **self.plan.loader, **kwargs}
        rank = self.plan.rank
        if rank is not None and "sampler" not in options:
            options["sampler"] = DistributedSampler(
                dataset, num_replicas=rank.world_size, rank=rank.rank, shuffle=bool(options.pop("shuffle", False))
            )
        loader = DataLoader(dataset, **options)
        return EpochLoader(loader, self) if train else loader

    def to_device(self, batch: Any, *more: Any) -> Any:
        """`batch` on the device with the knobs' input transforms (channels_last), as the engine
        moves a batch: a tensor, a tuple, list or dict of them, nested, any structure kept.
        `to_device(inputs, targets)` returns the pair, each moved."""
        if more:
            return tuple(self.inputs((batch, *more)))
        return self.inputs(batch)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.plan)

    def step(self, loss: torch.Tensor) -> None:
        """Backward through the GradScaler, gradient hooks (e.g. pruning masks), optimizer step,
        zero_grad; then AFTER_STEP (an lr_schedule sets the next step's rate)."""
        self.start()
        self.scaler.scale(loss).backward()
        self.state.optimizer_step()
        self.state.step += 1
        self.state.loss = float(loss.detach().float().item())
        self.state.emit(Event.AFTER_STEP, self.state.loss)

    def validated(self, metrics: dict[str, float]) -> None:
        """AFTER_EVAL with the metrics of the validation your loop just ran (the session's
        `report` calls it)."""
        self.state.metrics = dict(metrics)
        self.state.emit(Event.AFTER_EVAL, self.state.metrics)

    def epoch_started(self) -> None:
        self.start()
        self.state.epoch += 1

    def epoch_ended(self) -> None:
        self.state.emit(Event.EPOCH_END)

    def close(self, ended: bool = True) -> None:
        """FIT_END (unless training did not end well: `ended=False`), then undo process-wide
        changes (thread count, cudnn.benchmark). Under data_parallel=ddp `model` is then your own
        module again, its DistributedDataParallel wrapper released."""
        if self._started and not self._ended and ended:
            self._ended = True
            self.state.emit(Event.FIT_END)
        for cleanup in self.plan.cleanups:
            cleanup()
        self.plan.cleanups.clear()
        if self.plan.rank is not None:
            self._release_wrapper()

    def _release_wrapper(self) -> None:
        # A DistributedDataParallel wrapper left to the interpreter's exit is destroyed after the
        # script's destroy_process_group(), and torch then aborts the process ("terminate called
        # without an active exception": 3 runs in 12 of plain torch 2.14 DDP on gloo). Its reducer
        # sits in reference cycles, so it is freed here, while the process group is alive.
        self.model = self.state.model = unwrap(self.model)
        gc.collect()

    def __enter__(self) -> "Tuned":
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        self.close(ended=kind is None)


class LoaderView:
    """A DataLoader seen through a wrapper that changes only how it is iterated: its length and
    attributes (sampler, dataset, batch_size ...) are the loader's."""

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class EpochLoader(LoaderView):
    """A training DataLoader that tells its Tuned when an epoch starts and when it ends."""

    def __init__(self, loader: DataLoader, tuned: Tuned) -> None:
        super().__init__(loader)
        self.tuned = tuned

    def __iter__(self) -> Iterator[Any]:
        self.tuned.epoch_started()
        yield from self.loader
        self.tuned.epoch_ended()


def apply(
    config: str | Path | dict[str, Any],
    model: torch.nn.Module,
    *,
    device: str | None = None,
    plugin_paths: tuple[str, ...] = (),
    loss_fn: Any = None,
    total_steps: int | None = None,
) -> Tuned:
    """Configure `model` (and its optimizer, loader, precision) with a tuned configuration.

    `config` is a file from `autotune study export` (TOML or JSON) or a dict of settings.
    Settings not given keep the built-in baseline recipe. `total_steps`: the optimizer steps your
    loop will take, which a learning-rate schedule is sized from. A setting that cannot take
    effect in your loop (docs/session.md lists them) raises UsageError naming the knob and why.
    """
    settings = load_config_file(config)["settings"] if isinstance(config, (str, Path)) else dict(config)
    registry = load_registry(plugin_paths=plugin_paths)
    try:
        plan = plan_for(settings, model, registry=registry, device=device, loss_fn=loss_fn, strict=True)
    except Unsupported as exc:
        raise UsageError(str(exc)) from None
    try:
        return Tuned(plan, model, plan.extras["settings"], total_steps=total_steps)
    except Unsupported as exc:
        for cleanup in plan.cleanups:
            cleanup()
        raise UsageError(str(exc)) from None


def plan_for(
    settings: dict[str, Any],
    model: torch.nn.Module,
    *,
    registry: Registry | None = None,
    hardware: Hardware | None = None,
    device: str | None = None,
    loss_fn: Any = None,
    strict: bool = False,
) -> TrainingPlan:
    """The plan the knobs make of `settings` (resolved over the baseline, kept in
    `plan.extras["settings"]`) for `model`, as `apply` and the session API use it.

    A setting of a knob that does nothing here raises UsageError naming the knob and why when
    `strict` (autotune.apply); otherwise (a --script trial, whose study could not see the model:
    channels_last on an MLP) it is left out and says so in `plan.notes`. A knob that needs
    autotune's own loop is refused either way (a script study leaves it out of its space)."""
    registry = registry or load_registry()
    hardware = hardware or detect((device or "").split(":")[0] or None)
    workload = script_workload("user", model, loss_fn)
    index = settings_index(registry, hardware)
    unsuited = {}
    for key, value in settings.items():
        knob = index[key][0] if key in index else None
        reason = exclusion(knob, hardware, workload.traits()) if knob is not None else None
        if strict or reason in (OWN_LOOP_STEPS, OWN_LOOP_DATA):
            continue  # resolve_settings refuses it, naming the knob and why
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


def refuse_in_own_loop(registry: Registry, hardware: Hardware, settings: dict[str, Any]) -> None:
    """UsageError naming the first knob set away from its baseline that cannot act in a --script
    trial's one process and own loop: its `apply`, on its own, hooks a loop event the script cannot
    fire (STEP, BEFORE_EVAL) or asks for several processes (data_parallel=ddp). `trial run --script
    --set` refuses it before the script starts. A knob whose apply fails here is left to the run."""
    workload = script_workload("user")
    for knob in registry.knobs.values():
        mine = {p.name: settings[p.name] for p in knob.params(hardware) if p.name in settings}
        baseline = knob.baseline(hardware)
        if all(baseline.get(key) == value for key, value in mine.items()):
            continue
        plan = TrainingPlan(device=torch.device("cpu"), hardware=hardware, workload=workload, own_loop=True)
        try:
            knob.apply(mine, plan)
        except Exception:
            continue  # the run itself says why
        finally:
            for cleanup in plan.cleanups:
                cleanup()
        unfired = [event for event in OWN_LOOP_UNFIRED if plan.handlers.get(event)]
        if unfired:
            raise UsageError(unfired_reason(knob.name, unfired))
        if plan.processes > 1:
            raise UsageError(
                f"knob '{knob.name}' asks for {plan.processes} processes: a --script trial is one process; "
                "start your script under torchrun and use autotune.apply instead"
            )
