"""The training engine: one real, measured training run of a workload under resolved settings.

What is measured, and how:
- throughput: samples / seconds over the timed steps, where a step's time runs from asking the
  DataLoader for a batch to the optimizer step finishing on the device. It includes data loading
  (and DataLoader worker start-up at each epoch) and excludes the first `warmup_steps` steps and
  validation.
- step_time_p50/p95: compute time per timed step (batch on device -> optimizer step done).
- data_wait_fraction: time waiting for batches / (waiting + compute) over timed steps.
- train_time / time_to_target: all training time from the first step, warm-up and compilation
  included (they are real costs), validation excluded.
- val_time: time spent validating (the intermediate validations and the final one); the rest of
  wall_time - train_time is building the model, loaders and optimizer, and tearing them down.
- DataLoader workers keep prefetching while training pauses for validation, which would make
  the batches after a validation look free. The steps that consume those batches (workers x
  prefetch_factor of them) are charged at least the median data wait of the steps just before
  the pause, so workers are credited only for the overlap they give during training.
- peak_memory_bytes: the CUDA allocator peak on GPU; the process peak RSS elsewhere (a fresh
  process per trial gives a clean figure; within one process it is the lifetime peak).
- data-parallel runs (several processes, autotune.ranks): samples and throughput count every
  process's samples, times are the first process's, validation is summed over the processes,
  and peak memory is the largest of any one process (each has its own device).
"""

from __future__ import annotations

import gc
import math
import random
import resource
import statistics
import sys
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from autotune import ranks
from autotune.budget import Budget
from autotune.errors import RunError, Unsupported
from autotune.knob import Rank, TrainingPlan

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.workloads import Workload


@dataclass
class EvalPoint:
    """One intermediate validation, passed to `on_eval` (Optuna reports and pruning use it)."""

    index: int
    step: int
    epoch: float
    train_time: float
    val_loss: float
    val_accuracy: float


@dataclass
class Progress:
    """Live progress, passed to `on_progress` about twice a second."""

    step: int
    total_steps: int | None
    epoch: float
    train_time: float
    fraction: float
    samples_per_s: float
    peak_memory_bytes: int


@dataclass
class RunResult:
    status: str  # "ok", "pruned", "diverged", "failed", "oom", "unsupported"
    settings: dict[str, Any]
    device: str
    error: str | None = None
    throughput: float | None = None
    step_time_p50: float | None = None
    step_time_p95: float | None = None
    data_wait_fraction: float | None = None
    peak_memory_bytes: int | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    nonzero_fraction: float | None = None
    wall_time: float | None = None
    train_time: float | None = None
    val_time: float | None = None
    time_to_target: float | None = None
    target: float | None = None
    steps: int = 0
    samples: int = 0
    epochs: float = 0.0
    curve: list[EvalPoint] = field(default_factory=list)
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "pruned")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        return int(torch.mps.driver_allocated_memory())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def nonzero_fraction(model: torch.nn.Module) -> float:
    """Fraction of nonzero weights over every conv and linear layer (what pruning changes)."""
    total = nonzero = 0
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
            weight = module.weight.detach()
            total += weight.numel()
            nonzero += int(torch.count_nonzero(weight).item())
    return nonzero / total if total else 1.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def build_plan(
    registry: "Registry",
    hardware: "Hardware",
    workload: "Workload",
    settings: dict[str, Any],
    device: torch.device,
    rank: Rank | None = None,
) -> TrainingPlan:
    """Let every available knob edit a fresh plan with its settings."""
    plan = TrainingPlan(
        device=device, hardware=hardware, workload=workload, loss_fn=workload.loss_fn, rank=rank
    )
    for knob in registry.knobs.values():
        if knob.unavailable(hardware) is not None:
            continue
        mine = {p.name: settings[p.name] for p in knob.params(hardware) if p.name in settings}
        try:
            knob.apply(mine, plan)
        except Unsupported:
            raise
        except Exception as exc:
            plugin = registry.knob_plugins.get(knob.name, "?")
            raise RunError(
                f"knob '{knob.name}' (plugin '{plugin}') raised in apply: {type(exc).__name__}: {exc}"
            ) from exc
    if plan.optimizer_factory is None:
        plan.optimizer_factory = torch.optim.SGD
        plan.optimizer_kwargs.setdefault("lr", 0.01)
    return plan


def _device_for(hardware: "Hardware", device: str | None) -> torch.device:
    return torch.device(device or hardware.device_type)


class _Stop(Exception):
    def __init__(self, status: str) -> None:
        self.status = status


def run(
    workload: "Workload",
    settings: dict[str, Any],
    registry: "Registry",
    hardware: "Hardware",
    budget: Budget,
    *,
    device: str | None = None,
    seed: int = 0,
    target: float | None = None,
    stop_at_target: bool = False,
    eval_every_steps: int | None = None,
    evals_per_epoch: int = 1,
    warmup_steps: int = 3,
    on_eval: Callable[[EvalPoint], bool | None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    rank: Rank | None = None,
) -> RunResult:
    """Train `workload` under `settings` for `budget` and measure it.

    When a knob asks for several processes (data-parallel training), the run happens in that many
    new processes (autotune.ranks) and this returns the first one's result; `rank` is set only
    inside those processes.

    Validation runs `evals_per_epoch` times an epoch (or every `eval_every_steps` steps); it
    bounds how finely time_to_target is resolved. `on_eval` is called after each intermediate
    validation; returning True stops the run as
    "pruned". Failures inside training come back as a RunResult with status "failed" / "oom" /
    "unsupported" and the exception's message, never as an exception.
    """
    wall_start = time.perf_counter()
    dev = _device_for(hardware, device)
    result = RunResult(status="ok", settings=dict(settings), device=str(dev), target=target)
    plan: TrainingPlan | None = None
    model = optimizer = None
    try:
        seed_everything(seed)
        plan = build_plan(registry, hardware, workload, settings, dev, rank)
        if plan.processes > 1 and rank is None:
            options = dict(
                seed=seed, target=target, stop_at_target=stop_at_target, eval_every_steps=eval_every_steps,
                evals_per_epoch=evals_per_epoch, warmup_steps=warmup_steps,
            )
            result = ranks.run_in_processes(
                plan.processes, workload, settings, registry, hardware, budget, options, on_eval, on_progress
            )
        else:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            model, optimizer = _train(
                plan, budget, result, seed, target, stop_at_target, eval_every_steps, evals_per_epoch,
                warmup_steps, on_eval, on_progress,
            )
            result.nonzero_fraction = nonzero_fraction(model)
    except Unsupported as exc:
        result.status, result.error = "unsupported", str(exc)
    except torch.OutOfMemoryError as exc:
        result.status, result.error = "oom", f"out of memory: {str(exc).splitlines()[0]}"
    except RunError as exc:
        result.status, result.error = "failed", str(exc)
    except Exception as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        result.traceback = traceback.format_exc()
    finally:
        if plan is None or plan.processes == 1 or rank is not None:
            result.peak_memory_bytes = _peak_memory(dev)
        if plan is not None:
            for cleanup in plan.cleanups:
                cleanup()
        del model, optimizer, plan
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    result.wall_time = time.perf_counter() - wall_start
    return result


def _loaders(plan: TrainingPlan, seed: int) -> tuple[DataLoader, DataLoader]:
    kwargs = dict(plan.loader)
    if kwargs.get("num_workers", 0) > 0:
        kwargs.setdefault("worker_init_fn", _worker_init)
    train_data, val_data = plan.workload.train_data, plan.workload.val_data
    val_batch = max(plan.batch_size, 256)
    if plan.rank is not None:
        # each process trains on its own shard (reshuffled each epoch by set_epoch), and
        # validates every world_size-th sample: the shards cover the set exactly once
        sampler = DistributedSampler(
            train_data, num_replicas=plan.rank.world_size, rank=plan.rank.rank, shuffle=True, seed=seed
        )
        train = DataLoader(train_data, batch_size=plan.batch_size, sampler=sampler, **kwargs)
        shard = Subset(val_data, range(plan.rank.rank, len(val_data), plan.rank.world_size))  # type: ignore[arg-type]
        return train, DataLoader(shard, batch_size=val_batch, shuffle=False, **kwargs)
    train = DataLoader(
        train_data,
        batch_size=plan.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
    val = DataLoader(val_data, batch_size=val_batch, shuffle=False, **kwargs)
    return train, val


def _evaluate(model: torch.nn.Module, loader: DataLoader, plan: TrainingPlan) -> tuple[float, float]:
    model.eval()
    loss_sum = 0.0
    correct = count = 0
    with torch.no_grad(), torch.autocast(
        plan.device.type, dtype=plan.autocast_dtype or torch.float32, enabled=plan.autocast_dtype is not None
    ):
        for inputs, targets in loader:
            inputs = inputs.to(plan.device, non_blocking=True)
            targets = targets.to(plan.device, non_blocking=True)
            for fn in plan.input_transforms:
                inputs = fn(inputs)
            outputs = model(inputs)
            loss_sum += float(plan.loss_fn(outputs.float(), targets).item()) * len(targets)
            correct += plan.workload.metric_fn(outputs, targets)
            count += len(targets)
    if plan.rank is not None:
        loss_sum, correct, count = ranks.Collective(plan.device).sum(loss_sum, correct, count)
    model.train()
    return loss_sum / max(count, 1), correct / max(count, 1)


def _train(
    plan: TrainingPlan,
    budget: Budget,
    result: RunResult,
    seed: int,
    target: float | None,
    stop_at_target: bool,
    eval_every_steps: int | None,
    evals_per_epoch: int,
    warmup_steps: int,
    on_eval: Callable[[EvalPoint], bool | None] | None,
    on_progress: Callable[[Progress], None] | None,
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    dev = plan.device
    train_loader, val_loader = _loaders(plan, seed)
    # several processes must take the same decisions at the same step: each stops on its own
    # only for what they all see alike (step counts, epoch ends, the summed validation)
    comm = ranks.Collective(dev) if plan.rank is not None else None
    world = plan.rank.world_size if plan.rank is not None else 1
    epoch = 0
    time_up = False  # a seconds budget, agreed between processes
    steps_per_epoch = len(train_loader)
    if budget.epochs is not None:
        total_steps: int | None = budget.epochs * steps_per_epoch
    else:
        total_steps = budget.steps
    if eval_every_steps is None:
        if budget.steps is not None:
            eval_every_steps = max(1, min(steps_per_epoch, budget.steps // 5))
        else:
            eval_every_steps = max(1, steps_per_epoch // max(1, evals_per_epoch))
    if total_steps is not None and total_steps <= 2 * warmup_steps:
        warmup_steps = total_steps // 4

    model = plan.workload.model_fn().to(dev)
    for _, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
        # not `fn(model) or model`: truth-testing calls __len__, which torch.compile's
        # OptimizedModule forwards to the model (TypeError for a model without one)
        transformed = fn(model)
        model = model if transformed is None else transformed
    model.train()
    assert plan.optimizer_factory is not None
    optimizer = plan.optimizer_factory(model.parameters(), **plan.optimizer_kwargs)
    scaler = torch.amp.GradScaler(dev.type, enabled=plan.grad_scaler)
    autocast_kwargs = dict(
        device_type=dev.type,
        dtype=plan.autocast_dtype or torch.float32,
        enabled=plan.autocast_dtype is not None,
    )
    non_blocking = bool(plan.loader.get("pin_memory"))

    step = 0
    samples = timed_samples = 0
    train_time = 0.0
    data_times: list[float] = []
    workers = int(plan.loader.get("num_workers", 0))
    prefetch_depth = workers * int(plan.loader.get("prefetch_factor") or 2) if workers else 0
    recent_waits: deque[float] = deque(maxlen=8)
    catch_up = 0  # steps still eating batches prefetched during a validation
    typical_wait = 0.0
    compute_times: list[float] = []
    last_progress = time.perf_counter()
    last_eval_step = -1

    def evaluate_now() -> None:
        nonlocal last_eval_step, catch_up, typical_wait
        last_eval_step = step
        if prefetch_depth:
            catch_up = prefetch_depth
            typical_wait = statistics.median(recent_waits) if recent_waits else 0.0
        val_loss, val_acc = timed_evaluate()
        point = EvalPoint(
            index=len(result.curve), step=step, epoch=step / steps_per_epoch,
            train_time=train_time, val_loss=val_loss, val_accuracy=val_acc,
        )
        result.curve.append(point)
        result.val_loss, result.val_accuracy = val_loss, val_acc
        if target is not None and result.time_to_target is None and val_acc >= target:
            result.time_to_target = train_time
            if stop_at_target:
                raise _Stop("ok")
        prune = on_eval is not None and bool(on_eval(point))
        if comm is not None:
            prune = comm.from_first(prune)  # only the first process asks the pruner
        if prune:
            raise _Stop("pruned")

    def timed_evaluate() -> tuple[float, float]:
        started = time.perf_counter()
        try:
            return _evaluate(model, val_loader, plan)
        finally:
            result.val_time = (result.val_time or 0.0) + time.perf_counter() - started

    def budget_spent() -> bool:
        if total_steps is not None:
            return step >= total_steps
        assert budget.seconds is not None
        return time_up if comm is not None else train_time >= budget.seconds

    try:
        while not budget_spent():
            t_iter = time.perf_counter()
            if isinstance(train_loader.sampler, DistributedSampler):
                train_loader.sampler.set_epoch(epoch)
            epoch += 1
            iterator = iter(train_loader)
            pending_data = time.perf_counter() - t_iter
            while not budget_spent():
                t0 = time.perf_counter()
                try:
                    inputs, targets = next(iterator)
                except StopIteration:
                    train_time += pending_data + time.perf_counter() - t0
                    break
                inputs = inputs.to(dev, non_blocking=non_blocking)
                targets = targets.to(dev, non_blocking=non_blocking)
                t1 = time.perf_counter()
                for fn in plan.input_transforms:
                    inputs = fn(inputs)
                with torch.autocast(**autocast_kwargs):
                    outputs = model(inputs)
                    loss = plan.loss_fn(outputs, targets)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if plan.grad_hooks:
                    scaler.unscale_(optimizer)
                    for hook in plan.grad_hooks:
                        hook(model)
                scaler.step(optimizer)
                scaler.update()
                _sync(dev)
                t2 = time.perf_counter()
                data_time = pending_data + (t1 - t0)
                pending_data = 0.0
                if catch_up:
                    catch_up -= 1
                    data_time = max(data_time, typical_wait)
                else:
                    recent_waits.append(data_time)
                step += 1
                batch = len(targets) * world  # the shards are equal: DistributedSampler pads
                samples += batch
                train_time += data_time + (t2 - t1)
                if step > warmup_steps:
                    data_times.append(data_time)
                    compute_times.append(t2 - t1)
                    timed_samples += batch
                diverged = not math.isfinite(float(loss.detach().float().item()))
                if comm is not None:
                    seconds_up = budget.seconds is not None and train_time >= budget.seconds
                    diverged, time_up = comm.any(diverged, seconds_up)
                if diverged:
                    raise _Stop("diverged")
                if on_progress is not None and t2 - last_progress >= 0.5:
                    last_progress = t2
                    fraction = (
                        step / total_steps if total_steps else train_time / (budget.seconds or 1)
                    )
                    on_progress(
                        Progress(
                            step=step, total_steps=total_steps, epoch=step / steps_per_epoch,
                            train_time=train_time, fraction=min(1.0, fraction),
                            samples_per_s=batch / max(t2 - t0, 1e-9),
                            peak_memory_bytes=_peak_memory(dev),
                        )
                    )
                if step % eval_every_steps == 0:
                    evaluate_now()
        if last_eval_step != step:
            evaluate_now()
    except _Stop as stop:
        result.status = stop.status
        if stop.status == "diverged":
            result.error = f"loss is not finite at step {step}"
            if last_eval_step != step:
                result.val_loss, result.val_accuracy = timed_evaluate()

    result.steps = step
    result.samples = samples
    result.epochs = step / steps_per_epoch
    result.train_time = train_time
    timed = sum(data_times) + sum(compute_times)
    if timed > 0:
        result.throughput = timed_samples / timed
        result.data_wait_fraction = sum(data_times) / timed
    elif train_time > 0:
        result.throughput = samples / train_time
    result.step_time_p50 = _quantile(compute_times, 0.5)
    result.step_time_p95 = _quantile(compute_times, 0.95)
    return model, optimizer
