"""Your own training script as a trial: the session API.

    import autotune

    session = autotune.session()                    # this trial's settings (run by hand: the baseline)
    tuned = session.prepare(model, loss_fn)         # the knobs applied: device, optimizer, precision ...
    loader = tuned.dataloader(train_set, shuffle=True)   # measured; ends when the budget is spent
    while not session.should_stop:
        for inputs, targets in loader:
            inputs, targets = tuned.to_device((inputs, targets))   # any nesting of tensors
            with tuned.autocast():
                loss = loss_fn(tuned.model(inputs), targets)
            tuned.step(loss)                        # backward + optimizer step + AFTER_STEP, timed
        session.report({"val_loss": ..., "accuracy": ...})   # True: stop (pruned, target, budget)

The knobs act as in a workload's run: `session.prepare` applies their transforms, and the loop
events they hook fire from the script's own loop (autotune.api.Tuned): FIT_START before the first
training batch, AFTER_STEP in each `tuned.step` (an lr_schedule moves the rate), EPOCH_END when
the training loader runs out, AFTER_EVAL in `session.report`, FIT_END when the script ends. A knob
that needs autotune's own loop (Need.ENGINE_LOOP, Need.TRAINING_DATA: micro_batches,
structured_pruning) is left out of a script study's space, with why (docs/session.md).

Run by `autotune study start --script train.py`, each trial runs the script in its own process
(autotune.launch.trial_process) with that trial's settings, budget and target; the session measures
what the engine measures for a workload, by the engine's own rules (autotune.run.loop_timing's
StepTimer and its StepClock): throughput with data loading, step times, data wait, set-up (from
`session.prepare` placing the model to the first training batch asked for), the steady step,
epochs (steps over the training loader's length), peak memory, the reported metrics, the time
to the target and its projection; and it reports validations to the study for pruning. Run as a
plain `python train.py`, the same script trains with the baseline settings and no budget:
`should_stop` only turns True once `session.report` is told to stop.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from autotune import batches
from autotune.api import LoaderView, Tuned, plan_for
from autotune.budget import Budget
from autotune.errors import RunError, Unsupported
from autotune.metrics import SCRIPT_METRIC, Metric
from autotune.run.evaluation import checked
from autotune.run.local import plain
from autotune.run.loop_timing import StepTimer, prefetch_depth
from autotune.run.measure import nonzero_fraction, peak_memory, sync
from autotune.run.projection import StepClock, warmup_steps
from autotune.run.types import EvalPoint, Progress, RunOptions, RunResult

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.registry import Registry

PROGRESS_INTERVAL = 0.5  # seconds between progress reports (the study's watchdog listens to them)


class Session:
    """One run of a script: its settings, its budget, and what it measured."""

    def __init__(
        self,
        settings: dict[str, Any],
        *,
        budget: Budget | None = None,
        options: RunOptions | None = None,
        registry: "Registry | None" = None,
        hardware: "Hardware | None" = None,
        device: str | None = None,
        on_eval: Callable[[EvalPoint], bool | None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        in_trial: bool = False,
    ) -> None:
        self.settings = dict(settings)
        self.budget = budget
        self.options = options or RunOptions()
        self.metric = Metric(self.options.metric, self.options.direction)
        self.registry, self.hardware, self.device = registry, hardware, device
        self.on_eval, self.on_progress = on_eval, on_progress
        self.in_trial = in_trial
        self.tuned: SessionTuned | None = None
        self.result = RunResult(status="ok", settings=dict(settings), device=device or "", target=self.options.target)
        self.step = self.samples = 0
        self.completed_epochs = 0  # passes that ran the training loader out
        self.steps_per_epoch: int | None = None  # the training loader's length (None: it has none)
        self.train_time = 0.0
        self.clock = StepClock(warmup_steps(self.options.warmup_steps, budget.steps if budget else None),
                               scale=self.options.run_scale)
        self.timer = StepTimer(self.result, self.clock, prefetch_depth=0)
        self._prepared: float | None = None  # when prepare() began placing the model: set-up starts
        self._training = False  # set-up is over: a training batch was asked for
        self._arrived: tuple[float, int] | None = None  # when the pending batch arrived, its size
        self._last_step_end: float | None = None
        self._last_progress = 0.0
        self._stop: str | None = None  # why should_stop: "pruned", "target", "budget"
        self._wait = 0.0  # the pending batch's wait for the loader
        self._started = time.perf_counter()

    # the script's side ------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module, loss_fn: Any = None) -> "SessionTuned":
        """`model` configured by this trial's settings: on its device, transformed (pruning,
        channels_last, torch.compile), with the optimizer, GradScaler and loader settings the
        knobs chose. Call it once per run."""
        if self.tuned is not None:
            raise RunError("session.prepare() was called twice: one session trains one model")
        plan = plan_for(self.settings, model, registry=self.registry, hardware=self.hardware,
                        device=self.device, loss_fn=loss_fn)
        if plan.processes > 1:
            raise Unsupported(
                "a knob asks for several processes (data_parallel=ddp): a --script trial is one process; "
                "start your script under torchrun and use autotune.apply instead"
            )
        # set-up starts where the engine's does: the knobs' plan made, the model, its transforms
        # and the optimizer still to build
        self._prepared = time.perf_counter()
        self.tuned = SessionTuned(plan, model, self.settings, self)
        self.result.device = str(plan.device)
        self._last_step_end = time.perf_counter()
        if plan.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(plan.device)
        return self.tuned

    @property
    def epochs(self) -> float:
        """Epochs trained: steps over the training loader's length, or the passes completed
        when it has none (an iterable dataset)."""
        if self.steps_per_epoch:
            return self.step / self.steps_per_epoch
        return float(self.completed_epochs)

    @property
    def should_stop(self) -> bool:
        """True once the budget is spent, the study pruned this trial, or (time-to-target
        studies) the target is reached."""
        return self._stop is not None or self._budget_spent()

    def report(self, metrics: dict[str, Any]) -> bool:
        """Record a validation (`{"val_loss": 1.9, "accuracy": 0.41}`); True when the script
        should stop. The study judges the trial by its metric (--metric; default val_loss for a
        script): it must be among these."""
        values = checked("script", metrics)
        now = time.perf_counter()
        if self._last_step_end is not None and self._arrived is None:
            validated = max(0.0, now - self._last_step_end)
            self.result.val_time = (self.result.val_time or 0.0) + validated
            self.timer.validated(validated)
        value = values.get(self.metric.name)
        if value is None and not self.in_trial:  # run by hand nothing judges it: report what it gives
            self.result.metrics = values
            if self.tuned is not None:
                self.tuned.validated(values)
            self._last_step_end = time.perf_counter()
            return self.should_stop
        if value is None:
            raise RunError(
                f"session.report() got {', '.join(sorted(values))} but not '{self.metric.name}', the metric "
                f"the study judges by (autotune study start --metric NAME)"
            )
        self.result.metrics, self.result.metric_value = values, value
        self.result.val_loss, self.result.val_accuracy = values.get("val_loss"), values.get("accuracy")
        point = EvalPoint(
            index=len(self.result.curve), step=self.step, epoch=self.epochs, train_time=self.train_time,
            value=value, metrics=values, val_loss=self.result.val_loss, val_accuracy=self.result.val_accuracy,
            projected=self.clock.projected(self.step),
        )
        self.result.curve.append(point)
        if self.tuned is not None:
            self.tuned.validated(values)  # AFTER_EVAL, before the target and the pruner judge
        target = self.options.target
        if target is not None and self.result.time_to_target is None and self.metric.reached(value, target):
            self.result.time_to_target = self.train_time
            self.result.projected_time_to_target = point.projected
            if self.options.stop_at_target:
                self._stop = "target"
        if self.on_eval is not None and self._stop is None and self.on_eval(point):
            self._stop = "pruned"
        self._last_step_end = time.perf_counter()  # the time spent reporting is not training
        return self.should_stop

    # a framework's own loop (autotune.adapters): its steps counted as tuned.step counts a script's

    def setup_started(self) -> None:
        """Set-up starts now, before the knobs' plan and the model (prepare() marks it for a script)."""
        self._prepared = time.perf_counter()

    def training_started(self, steps_per_epoch: int | None) -> None:
        """Training starts now (set-up is over); an epoch is `steps_per_epoch` optimizer steps."""
        if steps_per_epoch and math.isfinite(steps_per_epoch):
            self.steps_per_epoch = int(steps_per_epoch)
        if self.step == 0:
            self.clock.warmup_steps = warmup_steps(self.options.warmup_steps, self._total_steps())
        self._training_starts(time.perf_counter())

    def step_taken(self, arrived: float, rows: int, waited: float, loss: torch.Tensor | None,
                   device: torch.device) -> None:
        """One optimizer step of a framework's loop ended now: its first batch arrived at
        `arrived` (perf_counter) after `waited` seconds of data loading, with `rows` samples."""
        self._arrived, self._wait = (arrived, rows), waited
        self._step_done(loss.detach() if loss is not None else torch.zeros(()), device)

    # measuring (called by SessionTuned and its loader) -----------------------------------------

    def _total_steps(self) -> int | None:
        """The budget in steps, when it is known."""
        budget = self.budget
        if budget is None:
            return None
        if budget.epochs is not None and self.steps_per_epoch:
            return budget.epochs * self.steps_per_epoch
        return budget.steps

    def _training_loader(self, loader: DataLoader) -> None:
        """A training loader was made: an epoch is its length; the warm-up is the engine's for
        a budget of that many steps."""
        try:
            self.steps_per_epoch = len(loader) or None
        except TypeError:  # an iterable dataset without a length
            self.steps_per_epoch = None
        self.timer.prefetch_depth = prefetch_depth(loader)
        if self.step == 0:
            self.clock.warmup_steps = warmup_steps(self.options.warmup_steps, self._total_steps())

    def _training_starts(self, now: float) -> None:
        """The first training batch is asked for at `now`: the set-up, from prepare() placing the
        model on, is over."""
        if not self._training:
            self._training = True
            self.clock.setup = now - (self._prepared if self._prepared is not None else now)

    def _budget_spent(self) -> bool:
        budget = self.budget
        if budget is None:
            return False
        if budget.steps is not None:
            return self.step >= budget.steps
        if budget.epochs is not None:
            return self.epochs >= budget.epochs
        return budget.seconds is not None and self.train_time >= budget.seconds

    def _batch_arrived(self, batch: Any, waited_since: float) -> None:
        now = time.perf_counter()
        self._wait = now - waited_since
        self._arrived = (now, batches.batch_size(batch))

    def _epoch_ended(self, fetch_started: float) -> None:
        """The training loader ran out on a fetch begun at `fetch_started`."""
        self.train_time += self.timer.epoch_ended(fetch_started)
        self.completed_epochs += 1
        if self.tuned is not None:
            self.tuned.state.train_time = self.train_time
            self.tuned.epoch_ended()
        self._last_step_end = time.perf_counter()  # a validation after it starts here

    def _step_done(self, loss: torch.Tensor, device: torch.device) -> None:
        sync(device)
        now = time.perf_counter()
        if self._arrived is not None:
            arrived, size = self._arrived
            wait = self._wait
        else:  # a batch that did not come from tuned.dataloader: its loading is not seen
            arrived, size, wait = self._last_step_end or now, self.tuned.batch_size if self.tuned else 1, 0.0
            self._training_starts(arrived)
        self._arrived = None
        compute = now - arrived
        self.step += 1
        self.samples += size
        data_time = self.timer.step(wait, compute, size, timed=self.step > self.clock.warmup_steps)
        self.train_time += data_time + compute
        self._last_step_end = now
        if self.tuned is not None:  # what the knobs' handlers read (LoopState.fraction)
            self.tuned.state.train_time, self.tuned.state.samples = self.train_time, self.samples
        if not math.isfinite(float(loss.detach().float().item())):
            self._stop = "diverged"
            self.result.status, self.result.error = "diverged", f"loss is not finite at step {self.step}"
        if self.on_progress is not None and now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            total = self._total_steps()
            seconds = self.budget.seconds if self.budget is not None else None
            fraction = self.step / total if total else (self.train_time / seconds if seconds else 0.0)
            self.on_progress(Progress(
                step=self.step, total_steps=total, epoch=self.epochs, train_time=self.train_time,
                fraction=min(1.0, fraction), samples_per_s=size / max(data_time + compute, 1e-9),
                peak_memory_bytes=peak_memory(device),
            ))

    def finish(self) -> RunResult:
        """What the run measured, as a trial's result."""
        result = self.result
        if self._stop == "pruned":
            result.status = "pruned"
        if result.status == "ok" and self.step == 0:
            result.status, result.error = "failed", "the script trained no step (call tuned.step(loss) for each batch)"
        elif result.status == "ok" and not result.curve:
            result.status, result.error = "failed", (
                f"the script reported no validation: call session.report({{'{self.metric.name}': ...}}) "
                f"after training"
            )
        result.steps, result.samples, result.epochs, result.train_time = self.step, self.samples, self.epochs, self.train_time
        self.timer.record(self.samples, self.train_time)  # set-up, the steady step, the step figures
        if self.tuned is not None:
            result.peak_memory_bytes = peak_memory(self.tuned.device)
            result.notes = plain(self.tuned.plan.notes)
            result.nonzero_fraction = nonzero_fraction(self.tuned.model)
        result.wall_time = time.perf_counter() - self._started
        return result


class SessionTuned(Tuned):
    """Tuned (autotune.api) whose training loader and steps the session measures."""

    def __init__(self, plan: Any, model: torch.nn.Module, settings: dict[str, Any], session: Session) -> None:
        super().__init__(plan, model, settings, start=False)  # FIT_START once the budget's steps are known
        self.session = session

    def start(self) -> None:
        """FIT_START, with the budget in steps (`--budget-steps`, or epochs times the training
        loader's length) or in seconds, as the engine gives it."""
        if not self._started:
            budget, total = self.session.budget, self.session._total_steps()
            self.state.total_steps = round(total) if total is not None else None
            self.state.budget_seconds = budget.seconds if budget is not None else None
            self.state.steps_per_epoch = self.session.steps_per_epoch
        super().start()

    def dataloader(self, dataset: Dataset, train: bool = True, **kwargs: Any) -> Any:
        """The tuned DataLoader; a training one (`train=True`) is measured and yields nothing
        more once the budget is spent. Validation loaders: `train=False`."""
        loader = super().dataloader(dataset, train=False, **kwargs)
        if not train:
            return loader
        self.session._training_loader(loader)
        return MeasuredLoader(loader, self.session)

    def step(self, loss: torch.Tensor) -> None:
        super().step(loss)  # AFTER_STEP inside the step's time, as the engine counts it
        self.session._step_done(loss, self.device)


class MeasuredLoader(LoaderView):
    """A training DataLoader whose waits the session counts as data loading."""

    def __init__(self, loader: DataLoader, session: Session) -> None:
        super().__init__(loader)
        self.session = session

    def __iter__(self) -> Iterator[Any]:
        session = self.session
        if session.should_stop:
            return
        if session.tuned is not None:
            session.tuned.epoch_started()  # FIT_START before the first
        started = time.perf_counter()
        session._training_starts(started)
        iterator = iter(self.loader)  # the epoch's start (its workers' too), as the engine counts it
        session.timer.epoch_started(time.perf_counter() - started)
        while not session.should_stop:
            fetch_started = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                session._epoch_ended(fetch_started)
                return
            session._batch_arrived(batch, fetch_started)
            yield batch


_current: Session | None = None


def session() -> Session:
    """The session of this trial when autotune runs the script, else one with the baseline
    settings and no budget (the script then trains as it would without autotune)."""
    global _current
    if _current is None:
        from autotune.hardware import detect
        from autotune.registry import load_registry
        from autotune.settings import baseline_settings
        from autotune.workloads import script_workload

        registry, hardware, script = load_registry(), detect(), Metric.named(SCRIPT_METRIC)
        settings = baseline_settings(registry, hardware, script_workload("standalone"))
        _current = Session(settings, registry=registry, hardware=hardware,
                           options=RunOptions(metric=script.name, direction=script.direction))
    return _current


def activate(current: Session | None) -> None:
    """Make `current` what `autotune.session()` returns (the trial process does, before the script)."""
    global _current
    _current = current
