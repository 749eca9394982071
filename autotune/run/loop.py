"""The training loop of one process: loaders, the measured steps, validation, early stops.

What is measured, and how, is described in autotune.run.engine; `train` fills a RunResult.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from autotune import batches
from autotune.budget import Budget
from autotune.errors import Unsupported
from autotune.metrics import Metric
from autotune.run.collective import Collective
from autotune.run.evaluation import evaluate, primary, train_step_for
from autotune.run.loop_events import Event
from autotune.run.loop_state import LoopState
from autotune.run.measure import peak_memory, step_figures, sync, worker_init
from autotune.run.plan import TrainingPlan
from autotune.run.projection import StepClock
from autotune.run.types import EvalPoint, Progress, RunOptions, RunResult
from autotune.workloads import dataset_size


class Stop(Exception):
    """Ends training early with a status: ok (target reached), pruned or diverged."""

    def __init__(self, status: str) -> None:
        self.status = status


def loaders(plan: TrainingPlan, seed: int) -> tuple[DataLoader, DataLoader]:
    """The training and validation loaders; Unsupported when a batch is larger than the data it
    is drawn from (it would silently be the whole set, and the run would report a batch size it
    never used)."""
    kwargs = dict(plan.loader)
    if kwargs.get("num_workers", 0) > 0:
        kwargs.setdefault("worker_init_fn", worker_init)
    train_data, val_data = plan.workload.train_data, plan.workload.val_data
    world = plan.rank.world_size if plan.rank is not None else 1
    size = dataset_size(train_data)  # None for an iterable dataset: its size is not known
    shard = math.ceil(size / world) if size is not None else None
    if shard is not None and plan.batch_size > shard:
        whose = "each process's share of the training set" if world > 1 else "the training set"
        raise Unsupported(f"batch_size {plan.batch_size:,} is larger than {whose} ({shard:,} samples)")
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


def train(
    plan: TrainingPlan,
    budget: Budget,
    result: RunResult,
    options: RunOptions,
    on_eval: Callable[[EvalPoint], bool | None] | None,
    on_progress: Callable[[Progress], None] | None,
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Train `plan` for `budget`, measuring into `result`; returns the model and optimizer (the
    caller frees them)."""
    dev = plan.device
    target, stop_at_target = options.target, options.stop_at_target
    metric = Metric(options.metric, options.direction)
    eval_every_steps, evals_per_epoch = options.eval_every_steps, options.evals_per_epoch
    warmup_steps = options.warmup_steps
    set_up = time.perf_counter()
    train_loader, val_loader = loaders(plan, options.seed)
    result.val_samples = dataset_size(plan.workload.val_data)
    # several processes must take the same decisions at the same step: each stops on its own
    # only for what they all see alike (step counts, epoch ends, the summed validation)
    comm = Collective(dev) if plan.rank is not None else None
    world = plan.rank.world_size if plan.rank is not None else 1
    time_up = False  # a seconds budget, agreed between processes
    steps_per_epoch = len(train_loader)
    if budget.epochs is not None:
        total_steps: int | None = budget.epochs * steps_per_epoch
    else:
        total_steps = budget.steps
    if eval_every_steps is None:
        if budget.steps is not None:
            eval_every_steps = max(1, min(steps_per_epoch, budget.steps // max(5, options.evals_per_budget)))
        else:
            eval_every_steps = max(1, steps_per_epoch // max(1, evals_per_epoch))
            if total_steps is not None and options.evals_per_budget:
                eval_every_steps = max(1, min(eval_every_steps, total_steps // options.evals_per_budget))
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
    state = LoopState(
        plan=plan, model=model, optimizer=optimizer,
        scaler=torch.amp.GradScaler(dev.type, enabled=plan.grad_scaler), train_step=train_step_for(plan),
        total_steps=total_steps, budget_seconds=budget.seconds, steps_per_epoch=steps_per_epoch,
    )
    non_blocking = bool(plan.loader.get("pin_memory"))
    clock = StepClock(warmup_steps, scale=options.run_scale, setup=time.perf_counter() - set_up)

    def transformed(batch: Any) -> Any:
        """A batch on the device with every knob's input transform applied to its tensors."""
        for fn in plan.input_transforms:
            batch = batches.map_tensors(batch, fn)
        return batch

    def prepare(batch: Any) -> Any:
        return transformed(batches.to_device(batch, dev, non_blocking))

    timed_samples = 0
    data_times: list[float] = []
    workers = int(plan.loader.get("num_workers", 0))
    prefetch_depth = workers * int(plan.loader.get("prefetch_factor") or 2) if workers else 0
    recent_waits: deque[float] = deque(maxlen=8)
    catch_up = 0  # steps still eating batches prefetched during a validation
    typical_wait = 0.0
    # Seconds of the last validation that the catch-up steps may still be charged with: what they
    # are charged moves from validation time to training time, never more than the validation
    # lasted, so train_time + val_time stays the time that really passed.
    credit = 0.0
    compute_times: list[float] = []
    last_progress = time.perf_counter()
    last_eval_step = -1

    def evaluate_now() -> None:
        nonlocal last_eval_step, catch_up, typical_wait, credit
        last_eval_step = state.step
        if prefetch_depth:
            catch_up = prefetch_depth
            typical_wait = statistics.median(recent_waits) if recent_waits else 0.0
        before = result.val_time or 0.0
        value = timed_evaluate()
        credit = (result.val_time or 0.0) - before
        point = EvalPoint(
            index=len(result.curve), step=state.step, epoch=state.step / steps_per_epoch,
            train_time=state.train_time, value=value, metrics=dict(state.metrics),
            val_loss=result.val_loss, val_accuracy=result.val_accuracy, projected=clock.projected(state.step),
        )
        result.curve.append(point)
        if target is not None and result.time_to_target is None and metric.reached(value, target):
            result.time_to_target = state.train_time
            result.projected_time_to_target = point.projected
            if stop_at_target:
                raise Stop("ok")
        prune = on_eval is not None and bool(on_eval(point))
        if comm is not None:
            prune = comm.from_first(prune)  # only the first process asks the pruner
        if prune:
            raise Stop("pruned")

    def timed_evaluate() -> float:
        started = time.perf_counter()
        try:
            state.emit(Event.BEFORE_EVAL)
            metrics = evaluate(plan, state.model, val_loader, prepare)
            state.metrics = metrics
            result.metrics = metrics
            result.val_loss, result.val_accuracy = metrics.get("val_loss"), metrics.get("accuracy")
            result.metric_value = primary(plan.workload.name, metrics, metric.name)
            state.emit(Event.AFTER_EVAL, metrics)
            return result.metric_value
        finally:
            result.val_time = (result.val_time or 0.0) + time.perf_counter() - started

    def budget_spent() -> bool:
        if total_steps is not None:
            return state.step >= total_steps
        assert budget.seconds is not None
        return time_up if comm is not None else state.train_time >= budget.seconds

    one_step = state.step_chain()
    state.emit(Event.FIT_START)
    try:
        while not budget_spent():
            t_iter = time.perf_counter()
            if isinstance(train_loader.sampler, DistributedSampler):
                train_loader.sampler.set_epoch(state.epoch)
            state.epoch += 1
            iterator = iter(train_loader)
            pending_data = time.perf_counter() - t_iter
            while not budget_spent():
                t0 = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    ended = pending_data + time.perf_counter() - t0
                    state.train_time += ended
                    clock.epoch_boundary(ended)
                    state.emit(Event.EPOCH_END)
                    break
                batch = batches.to_device(batch, dev, non_blocking)
                t1 = time.perf_counter()  # the transforms are compute, the move is data loading
                loss = one_step(transformed(batch))
                state.step += 1
                state.loss = None if loss is None else _float(loss)  # .item() waits for the device
                state.emit(Event.AFTER_STEP, state.loss)
                sync(dev)
                t2 = time.perf_counter()
                epoch_start, pending_data = pending_data, 0.0
                data_time = epoch_start + (t1 - t0)
                clock.epoch_boundary(epoch_start)
                if catch_up:
                    catch_up -= 1
                    charge = min(max(0.0, typical_wait - data_time), credit)
                    credit -= charge
                    result.val_time = (result.val_time or 0.0) - charge
                    data_time += charge
                else:
                    recent_waits.append(data_time)
                size = batches.batch_size(batch) * world  # the shards are equal: DistributedSampler pads
                state.samples += size
                state.train_time += data_time + (t2 - t1)
                clock.step(data_time - epoch_start + (t2 - t1))
                if state.step > warmup_steps:
                    data_times.append(data_time)
                    compute_times.append(t2 - t1)
                    timed_samples += size
                diverged = state.loss is not None and not math.isfinite(state.loss)
                if comm is not None:
                    seconds_up = budget.seconds is not None and state.train_time >= budget.seconds
                    diverged, time_up = comm.any(diverged, seconds_up)
                if diverged:
                    raise Stop("diverged")
                if on_progress is not None and t2 - last_progress >= 0.5:
                    last_progress = t2
                    on_progress(
                        Progress(
                            step=state.step, total_steps=total_steps, epoch=state.step / steps_per_epoch,
                            train_time=state.train_time, fraction=state.fraction,
                            samples_per_s=size / max(t2 - t0, 1e-9),
                            peak_memory_bytes=peak_memory(dev),
                        )
                    )
                if state.step % eval_every_steps == 0:
                    evaluate_now()
        if last_eval_step != state.step:
            evaluate_now()
    except Stop as stop:
        result.status = stop.status
        if stop.status == "diverged":
            result.error = f"loss is not finite at step {state.step}"
            if last_eval_step != state.step:
                timed_evaluate()
    state.emit(Event.FIT_END)

    result.steps = state.step
    result.samples = state.samples
    result.epochs = state.step / steps_per_epoch
    result.train_time = state.train_time
    result.setup_time = clock.setup
    result.one_time = clock.one_time()
    result.step_time = clock.step_time
    step_figures(result, data_times, compute_times, timed_samples, state.samples, state.train_time)
    if result.throughput is not None:
        units = plan.workload.units_per_sample
        result.rates = {f"{unit}_per_s": result.throughput * count for unit, count in units.items()}
    return state.model, optimizer


def _float(loss: Any) -> float:
    """A step's loss as a float (a handler may return a tensor or a number)."""
    if isinstance(loss, torch.Tensor):
        return float(loss.detach().float().item())
    return float(loss)
