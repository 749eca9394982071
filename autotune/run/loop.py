"""The training loop of one process: loaders, the measured steps, validation, early stops.

What is measured, and how, is described in autotune.run.engine; `train` fills a RunResult. Its
parts: the `Schedule` (steps, validation interval, warm-up), the `TrainingLoop` (the steps and
the early stops), its `Validation`, and its timing (autotune.run.loop_timing.StepTimer).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
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
from autotune.run.loop_timing import StepTimer, prefetch_depth
from autotune.run.measure import peak_memory, sync, worker_init
from autotune.run.plan import TrainingPlan
from autotune.run.projection import StepClock, warmup_steps
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


@dataclass(frozen=True)
class Schedule:
    """The run in steps: its budget (None for a budget in seconds), how often it validates, and
    how many of its first steps are the warm-up that the step figures leave out."""

    steps_per_epoch: int
    total_steps: int | None
    eval_every_steps: int
    warmup_steps: int

    @classmethod
    def of(cls, budget: Budget, options: RunOptions, steps_per_epoch: int) -> "Schedule":
        # a run length of 2.5 epochs (--run-epochs) is a whole number of steps
        total_steps = round(budget.epochs * steps_per_epoch) if budget.epochs is not None else budget.steps
        every = options.eval_every_steps
        if every is None:
            if budget.steps is not None:
                every = max(1, min(steps_per_epoch, budget.steps // max(5, options.evals_per_budget)))
            else:
                every = max(1, steps_per_epoch // max(1, options.evals_per_epoch))
                if total_steps is not None and options.evals_per_budget:
                    every = max(1, min(every, total_steps // options.evals_per_budget))
        return cls(steps_per_epoch, total_steps, every, warmup_steps(options.warmup_steps, total_steps))


class Inputs:
    """Batches as the model takes them: moved to the plan's device (data loading), then through
    every knob's input transform (compute)."""

    def __init__(self, plan: TrainingPlan) -> None:
        self.plan = plan
        self.non_blocking = bool(plan.loader.get("pin_memory"))

    def moved(self, batch: Any) -> Any:
        return batches.to_device(batch, self.plan.device, self.non_blocking)

    def transformed(self, batch: Any) -> Any:
        for fn in self.plan.input_transforms:
            batch = batches.map_tensors(batch, fn)
        return batch

    def __call__(self, batch: Any) -> Any:
        return self.transformed(self.moved(batch))


class Validation:
    """The run's validations: each one timed into `result.val_time`, its metrics into the result
    and the loop state, its point onto the curve; then the target or the pruner may stop the run."""

    def __init__(
        self, state: LoopState, result: RunResult, options: RunOptions, metric: Metric, loader: DataLoader,
        comm: Collective | None, clock: StepClock, on_eval: Callable[[EvalPoint], bool | None] | None,
    ) -> None:
        self.state, self.result, self.metric, self.loader = state, result, metric, loader
        self.target, self.stop_at_target = options.target, options.stop_at_target
        self.comm, self.clock, self.on_eval = comm, clock, on_eval
        self.inputs = Inputs(state.plan)
        self.last_step = -1  # the step of the last validation on the curve

    def measure(self) -> float:
        """Validate now: the primary metric's value, the metrics recorded, the seconds added to
        `result.val_time` even when it fails."""
        state, result = self.state, self.result
        started = time.perf_counter()
        try:
            state.emit(Event.BEFORE_EVAL)
            metrics = evaluate(state.plan, state.model, self.loader, self.inputs)
            state.metrics = metrics
            result.metrics = metrics
            result.val_loss, result.val_accuracy = metrics.get("val_loss"), metrics.get("accuracy")
            result.metric_value = primary(state.plan.workload.name, metrics, self.metric.name)
            state.emit(Event.AFTER_EVAL, metrics)
            return result.metric_value
        finally:
            result.val_time = (result.val_time or 0.0) + time.perf_counter() - started

    def point(self) -> EvalPoint:
        """Validate now and add the point to the curve."""
        state, result = self.state, self.result
        self.last_step = state.step
        value = self.measure()
        point = EvalPoint(
            index=len(result.curve), step=state.step, epoch=state.step / state.steps_per_epoch,
            train_time=state.train_time, value=value, metrics=dict(state.metrics),
            val_loss=result.val_loss, val_accuracy=result.val_accuracy, projected=self.clock.projected(state.step),
        )
        result.curve.append(point)
        return point

    def judge(self, point: EvalPoint) -> None:
        """Record the first time the target is reached (Stop("ok") there with stop_at_target);
        Stop("pruned") when the pruner says so."""
        result = self.result
        if self.target is not None and result.time_to_target is None and self.metric.reached(point.value, self.target):
            result.time_to_target = self.state.train_time
            result.projected_time_to_target = point.projected
            if self.stop_at_target:
                raise Stop("ok")
        prune = self.on_eval is not None and bool(self.on_eval(point))
        if self.comm is not None:
            prune = self.comm.from_first(prune)  # only the first process asks the pruner
        if prune:
            raise Stop("pruned")


class TrainingLoop:
    """The measured steps of one run, epoch after epoch, until its budget is spent or it stops
    early (target, pruner, divergence); `run` announces the loop events to the knobs."""

    def __init__(
        self, state: LoopState, schedule: Schedule, budget: Budget, loader: DataLoader, timer: StepTimer,
        validation: Validation, comm: Collective | None, on_progress: Callable[[Progress], None] | None,
    ) -> None:
        self.state, self.schedule, self.budget, self.loader = state, schedule, budget, loader
        self.timer, self.validation, self.comm, self.on_progress = timer, validation, comm, on_progress
        self.result = validation.result
        self.inputs = Inputs(state.plan)
        rank = state.plan.rank
        self.world = rank.world_size if rank is not None else 1
        self.time_up = False  # a seconds budget, agreed between processes
        self.last_progress = time.perf_counter()
        self.one_step = state.step_chain()

    def run(self) -> None:
        state = self.state
        state.emit(Event.FIT_START)
        try:
            while not self.budget_spent():
                self.epoch()
            if self.validation.last_step != state.step:
                self.validate()
        except Stop as stop:
            self.result.status = stop.status
            if stop.status == "diverged":
                self.result.error = f"loss is not finite at step {state.step}"
                if self.validation.last_step != state.step:
                    self.validation.measure()
        state.emit(Event.FIT_END)

    def budget_spent(self) -> bool:
        state = self.state
        if self.schedule.total_steps is not None:
            return state.step >= self.schedule.total_steps
        assert self.budget.seconds is not None
        return self.time_up if self.comm is not None else state.train_time >= self.budget.seconds

    def epoch(self) -> None:
        """One pass over the training loader, or less when the budget runs out within it."""
        state = self.state
        started = time.perf_counter()
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(state.epoch)
        state.epoch += 1
        iterator = iter(self.loader)
        self.timer.epoch_started(time.perf_counter() - started)
        while not self.budget_spent():
            fetch_started = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                state.train_time += self.timer.epoch_ended(fetch_started)
                state.emit(Event.EPOCH_END)
                return
            self.step(batch, fetch_started)

    def step(self, batch: Any, t0: float) -> None:
        """One training step on `batch`, fetched from `t0` on, timed; then the early stops, the
        progress report, and a validation when one is due."""
        state = self.state
        batch = self.inputs.moved(batch)
        t1 = time.perf_counter()  # the transforms are compute, the move is data loading
        loss = self.one_step(self.inputs.transformed(batch))
        state.step += 1
        state.loss = None if loss is None else _float(loss)  # .item() waits for the device
        state.emit(Event.AFTER_STEP, state.loss)
        sync(state.device)
        t2 = time.perf_counter()
        size = batches.batch_size(batch) * self.world  # the shards are equal: DistributedSampler pads
        data_time = self.timer.step(t1 - t0, t2 - t1, size, timed=state.step > self.schedule.warmup_steps)
        state.samples += size
        state.train_time += data_time + (t2 - t1)
        self.stop_if_diverged()
        if self.on_progress is not None and t2 - self.last_progress >= 0.5:
            self.last_progress = t2
            self.report_progress(size / max(t2 - t0, 1e-9))
        if state.step % self.schedule.eval_every_steps == 0:
            self.validate()

    def stop_if_diverged(self) -> None:
        """Stop("diverged") on a loss that is not finite; the processes of a run also agree here
        on whether its seconds budget is spent."""
        state = self.state
        diverged = state.loss is not None and not math.isfinite(state.loss)
        if self.comm is not None:
            seconds_up = self.budget.seconds is not None and state.train_time >= self.budget.seconds
            diverged, self.time_up = self.comm.any(diverged, seconds_up)
        if diverged:
            raise Stop("diverged")

    def report_progress(self, samples_per_s: float) -> None:
        assert self.on_progress is not None
        state = self.state
        self.on_progress(
            Progress(
                step=state.step, total_steps=self.schedule.total_steps, epoch=state.step / self.schedule.steps_per_epoch,
                train_time=state.train_time, fraction=state.fraction, samples_per_s=samples_per_s,
                peak_memory_bytes=peak_memory(state.device),
            )
        )

    def validate(self) -> None:
        before = self.result.val_time or 0.0
        point = self.validation.point()
        self.timer.validated((self.result.val_time or 0.0) - before)
        self.validation.judge(point)


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
    metric = Metric(options.metric, options.direction)
    set_up = time.perf_counter()
    train_loader, val_loader = loaders(plan, options.seed)
    result.val_samples = dataset_size(plan.workload.val_data)
    # several processes must take the same decisions at the same step: each stops on its own
    # only for what they all see alike (step counts, epoch ends, the summed validation)
    comm = Collective(plan.device) if plan.rank is not None else None
    schedule = Schedule.of(budget, options, len(train_loader))
    model, optimizer = _model_and_optimizer(plan)
    state = LoopState(
        plan=plan, model=model, optimizer=optimizer,
        scaler=torch.amp.GradScaler(plan.device.type, enabled=plan.grad_scaler), train_step=train_step_for(plan),
        total_steps=schedule.total_steps, budget_seconds=budget.seconds, steps_per_epoch=schedule.steps_per_epoch,
    )
    clock = StepClock(schedule.warmup_steps, scale=options.run_scale, setup=time.perf_counter() - set_up)
    timer = StepTimer(result, clock, prefetch_depth(train_loader))
    validation = Validation(state, result, options, metric, val_loader, comm, clock, on_eval)
    TrainingLoop(state, schedule, budget, train_loader, timer, validation, comm, on_progress).run()

    result.steps = state.step
    result.samples = state.samples
    result.epochs = state.step / schedule.steps_per_epoch
    result.train_time = state.train_time
    timer.record(state.samples, state.train_time)
    if result.throughput is not None:
        units = plan.workload.units_per_sample
        result.rates = {f"{unit}_per_s": result.throughput * count for unit, count in units.items()}
    return state.model, optimizer


def _model_and_optimizer(plan: TrainingPlan) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The workload's model on the plan's device with the knobs' transforms applied, in train
    mode, and its optimizer."""
    model = plan.workload.model_fn().to(plan.device)
    for _, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
        # not `fn(model) or model`: truth-testing calls __len__, which torch.compile's
        # OptimizedModule forwards to the model (TypeError for a model without one)
        transformed = fn(model)
        model = model if transformed is None else transformed
    model.train()
    assert plan.optimizer_factory is not None
    return model, plan.optimizer_factory(model.parameters(), **plan.optimizer_kwargs)


def _float(loss: Any) -> float:
    """A step's loss as a float (a handler may return a tensor or a number)."""
    if isinstance(loss, torch.Tensor):
        return float(loss.detach().float().item())
    return float(loss)
