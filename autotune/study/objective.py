"""One trial of a study, as Optuna's objective: claim a slot, resolve the settings, run the trial
process, report validations for pruning (autotune.study.trial_watch), and record what it
measured."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Callable

import optuna

from autotune.formatting import settings_text
from autotune.launch.trial_process import TrialOutcome
from autotune.run.plan import OUT_OF_MEMORY_ROWS
from autotune.settings import resolve_settings
from autotune.statuses import FAILED_RUN_STATUSES, TRIAL_METRICS, RunStatus
from autotune.study import enqueued, retries
from autotune.study.slots import GiveWay, is_priority
from autotune.study.trial_watch import TrialWatch

if TYPE_CHECKING:
    from autotune.study.context import StudyState, TrialContext
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher
    from autotune.study.slots import StudySlots

# Settings that barely change activation memory: ignored when deciding whether a configuration
# lies in a region that already ran out of memory.
MEMORY_NEUTRAL = {"learning_rate", "momentum", "weight_decay", "beta2", "workers", "threads", "pruning"}

# The baseline recipe is enqueued as fixed params and may lie outside the space searched (a batch
# size below the space's low, say): it runs and is recorded as given, on purpose
# (autotune.study.enqueued), and Optuna's warning about it tells the user nothing they could act on.
warnings.filterwarnings("ignore", message=r"Fixed parameter .* is out of range", category=UserWarning)


# A baseline that fails runs again this many times before the study gives up (its trial process
# was killed, the machine ran out of memory once: one failure must not ruin the study).
MAX_BASELINE_RETRIES = 2

FINISHED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


def micro_batch_rows(settings: dict[str, Any]) -> int:
    """Samples a micro-batch holds under `settings`: what activation memory grows with."""
    return math.ceil(settings["batch_size"] / max(1, int(settings.get("micro_batches", 1))))


def infeasible(settings: dict[str, Any], trials: list["optuna.trial.FrozenTrial"]) -> str | None:
    """Why `settings` would run out of memory, from finished `trials` with the same
    memory-relevant settings: their micro-batches (batch_size / micro_batches) ran out of memory
    at no more samples than these hold. A trial that ran out of memory counts at the smallest
    micro-batch it noted as failing (`OUT_OF_MEMORY_ROWS`), or at its own micro-batch; one that
    recovered with smaller micro-batches counts at the one that failed. None when none did."""
    if settings.get("batch_size") is None:
        return None
    ignored = MEMORY_NEUTRAL | {"batch_size", "micro_batches"}
    mine = {k: v for k, v in settings.items() if k not in ignored}
    rows = micro_batch_rows(settings)
    for t in trials:
        other = t.user_attrs.get("settings", {})
        failed = _failed_rows(t, other)
        if failed is None or rows < failed:
            continue
        if {k: v for k, v in other.items() if k not in ignored} != mine:
            continue
        whole = settings.get("micro_batches", 1) == other.get("micro_batches", 1) == 1
        if whole and failed == other.get("batch_size"):
            return (
                f"infeasible: batch_size {settings['batch_size']} >= {other['batch_size']}, which ran out of "
                f"memory in trial {t.number} with the same settings"
            )
        return (
            f"infeasible: micro-batches of {rows} samples (batch_size {settings['batch_size']}, micro_batches "
            f"{settings.get('micro_batches', 1)}) >= {failed}, which ran out of memory in trial {t.number} "
            "with the same settings"
        )
    return None


def _failed_rows(trial: "optuna.trial.FrozenTrial", settings: dict[str, Any]) -> int | None:
    """The micro-batch at which `trial` ran out of memory; None when it did not."""
    failed = (trial.user_attrs.get("notes") or {}).get(OUT_OF_MEMORY_ROWS)
    if failed is None and trial.user_attrs.get("autotune_status") == RunStatus.OOM and "batch_size" in settings:
        failed = micro_batch_rows(settings)
    return failed


class TrialFailed(Exception):
    """Raised inside the objective so Optuna records FAIL and the study goes on."""


class TrialObjective:
    """Optuna's objective for one runner's trials. It reads the study's fixed facts from
    `context`, changes only `state` (the target, why the study cannot go on), starts trial
    processes through `launcher`, tells what happens through `events`, and takes a slot of the
    study's count from `slots` (stopping when `should_stop` says so)."""

    def __init__(self, context: "TrialContext", state: "StudyState", launcher: "TrialLauncher",
                 events: "StudyEvents", slots: "StudySlots", should_stop: Callable[[], bool]) -> None:
        self.context = context
        self.state = state
        self.launcher = launcher
        self.events = events
        self.slots = slots
        self.should_stop = should_stop

    def __call__(self, trial: optuna.Trial) -> Any:
        is_baseline = bool(trial.user_attrs.get("baseline"))
        try:
            self._take_slot(trial, is_baseline)
        except KeyboardInterrupt:
            self._surplus(trial, "not run: interrupted while waiting for a slot", requeue=True)
            raise
        overrides, settings = self._settings(trial, is_baseline)
        reason = infeasible(settings, self.state.study.get_trials(deepcopy=False, states=FINISHED_STATES))
        if reason is not None:
            trial.set_user_attr("autotune_status", RunStatus.INFEASIBLE.value)
            trial.set_user_attr("reason", reason)
            trial.set_constraint("memory", 1.0)
            raise optuna.TrialPruned(reason)
        watch = TrialWatch(trial, is_baseline, self.context, self.state, self.launcher.store, self.events)
        outcome = self._run(trial, overrides, settings, is_baseline, watch)
        return TrialRecord(self, trial, outcome, is_baseline, watch.prune_reason).value()

    # before the run ------------------------------------------------------------------------------

    def _take_slot(self, trial: optuna.Trial, is_baseline: bool) -> None:
        """Wait for the baseline's target if needed, then claim a slot; TrialPruned if this trial
        must not train (it is recorded as surplus and does not count)."""
        state = self.state
        if state.fatal is not None:
            raise self._surplus(trial, f"not run: {state.fatal}")
        if not is_baseline and self.context.objective.needs_target and state.target is None:
            try:
                state.set_target(self.slots.wait_for_target(state.study, self.should_stop))
            except GiveWay as exc:
                raise self._surplus(trial, str(exc), requeue=True) from None
        if self.should_stop():
            raise self._surplus(trial, "not run: the study was stopping", requeue=True)
        if not self.slots.claim(state.study, trial):
            raise self._surplus(trial, f"not run: the study already has its {self.context.spec.n_trials} trials")

    def _surplus(self, trial: optuna.Trial, reason: str, requeue: bool = False) -> optuna.TrialPruned:
        """Mark a trial that never trained; it does not count. With `requeue`, a trial that must
        run (baseline, retry) is enqueued again so that stopping does not lose it."""
        study = self.state.study
        trial.set_user_attr("autotune_status", RunStatus.SURPLUS.value)
        trial.set_user_attr("reason", reason)
        trials = study.get_trials(deepcopy=False)
        frozen = next((t for t in trials if t.number == trial.number), None)
        if requeue and frozen is not None and is_priority(frozen):
            retries.requeue(study, frozen, trials)
        return optuna.TrialPruned(reason)

    def _settings(self, trial: optuna.Trial, is_baseline: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """What the trial asks for (the baseline's recipe, an enqueued trial's given params, or
        what Optuna suggests with threads fitted), capped to its share of the cores, and what
        that resolves to, recorded on the trial. The baseline's and an enqueued trial's Optuna
        params are only the given values that run (autotune.study.enqueued)."""
        context = self.context
        given = None
        if is_baseline or trial.user_attrs.get("enqueued"):
            given = enqueued.given_params(self.state.study, trial.number)
            asked = context.baseline if is_baseline else resolve_settings(
                context.registry, context.hardware, context.workload, given)
        else:
            asked = self.launcher.fit_threads(context.space.suggest(trial, leave_out=self._refused()))
        overrides = self.launcher.cap_threads(dict(asked))
        settings = resolve_settings(context.registry, context.hardware, context.workload, overrides)
        if given is not None:
            context.space.record(trial, enqueued.recordable(context.space, settings, given))
        trial.set_user_attr("settings", settings)
        trial.set_user_attr("baseline", is_baseline)
        trial.set_user_attr("runner", retries.RUNNER_ID)
        return overrides, settings

    def _refused(self) -> dict[str, str]:
        """The settings the baseline's loop declared it cannot take (a framework adapter's): the
        search leaves them at the baseline's instead of spending trials on them."""
        baseline = self.state.baseline_trial()
        return (baseline.user_attrs.get("refuses") or {}) if baseline is not None else {}

    def _run(self, trial: optuna.Trial, overrides: dict[str, Any], settings: dict[str, Any], is_baseline: bool,
             watch: TrialWatch) -> TrialOutcome:
        """Start the trial process and wait for it; its live rows in the store last as long."""
        name, number, store = self.context.spec.name, trial.number, self.launcher.store
        log_path = self.context.logs_dir / f"{number}.log"
        request = self.launcher.request(overrides, is_baseline, str(log_path))
        store.trial_started(name, number, None, settings)
        shown = {k: v for k, v in settings.items() if k in self.context.searched} or settings
        self.events.emit("trial_started", f"trial {number} started: {settings_text(shown)}", number,
                         number=number, settings=settings, baseline=is_baseline)
        try:
            return self.launcher.run(request, number, on_eval=watch.on_eval, on_progress=watch.on_progress)
        except KeyboardInterrupt:
            trial.set_user_attr("autotune_status", RunStatus.INTERRUPTED.value)
            trial.set_user_attr("reason", "interrupted (SIGINT/SIGTERM); it will run again on resume")
            raise
        finally:
            store.trial_finished(name, number)

    # after the run -------------------------------------------------------------------------------

    def baseline_failed(self, trial: optuna.Trial, reason: str) -> None:
        """The baseline fixes the target and every speedup: run it again, at most
        MAX_BASELINE_RETRIES times; after that the study cannot go on (state.fail).

        The retry is enqueued while this trial still runs, so no other trial sees "no baseline
        pending" in between and goes ahead without a target."""
        study = self.state.study
        trials = study.get_trials(deepcopy=False)
        earlier = [t for t in trials if t.user_attrs.get("baseline") and t.state == optuna.trial.TrialState.FAIL
                   and t.number != trial.number]
        if len(earlier) < MAX_BASELINE_RETRIES:
            frozen = next(t for t in trials if t.number == trial.number)
            retries.requeue(study, frozen, trials)
            self.events.emit("trial_retried", f"trial {trial.number} (the baseline) failed: {reason}; running it "
                             "again", trial.number, number=trial.number)
            return
        self.state.fail(
            f"the baseline failed {len(earlier) + 1} times (trials "
            f"{', '.join(str(t.number) for t in [*earlier, trial])}), last: {reason}; without it the study "
            f"has no target and no speedup to measure"
        )


class TrialRecord:
    """What one finished trial process measured, written onto its Optuna trial, and the value
    it earned (or TrialPruned / TrialFailed with the reason)."""

    def __init__(self, objective: TrialObjective, trial: optuna.Trial, outcome: TrialOutcome, is_baseline: bool,
                 prune_reason: str | None) -> None:
        self.owner = objective
        self.context, self.state = objective.context, objective.state
        self.trial = trial
        self.outcome = outcome
        self.result = outcome.result or {}
        self.is_baseline = is_baseline
        self.prune_reason = prune_reason

    def value(self) -> Any:
        self._measurements()
        if self.outcome.status == RunStatus.UNSUPPORTED and not self.is_baseline:
            # a combination this machine or torch cannot run (a fused optimizer torch lacks) is a
            # point of the space that does not exist here, not a failure of the search; the
            # baseline is the study's yardstick and fails like any failure
            reason = f"unsupported here: {self.outcome.error or 'the knobs cannot run together'}"
            self.trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
        if self.outcome.status in FAILED_RUN_STATUSES:
            reason = self.outcome.error or self.outcome.status
            self.trial.set_user_attr("reason", reason)
            if self.is_baseline:
                self.owner.baseline_failed(self.trial, reason)
            raise TrialFailed(reason)
        if self.is_baseline:
            self._baseline_sets_the_target()
            self._baseline_time_to_target()
        if self.outcome.status == RunStatus.PRUNED:
            reason = self.prune_reason or "pruned"
            self.trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
        self._judge()
        return self._earned()

    def _measurements(self) -> None:
        trial, result, outcome = self.trial, self.result, self.outcome
        if result.get("settings"):
            # The settings the trial process resolved and applied, against the hardware it saw
            # (its GPUs, its share of the cores): the trial's record of what ran.
            trial.set_user_attr("settings", result["settings"])
        for key in TRIAL_METRICS:
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        trial.set_user_attr("log_tail", outcome.log_tail[-4000:])
        if result.get("refuses"):  # what the trial's loop cannot take (TrialObjective._refused)
            trial.set_user_attr("refuses", result["refuses"])
        # The metric at each validation (Optuna's intermediate values are in the objective's
        # units, seconds for time-to-accuracy): [epoch, value, projected seconds]
        trial.set_user_attr("curve", [
            [p.get("epoch"), p.get("value"), p.get("projected")] for p in result.get("curve", [])
        ])
        trial.set_user_attr("autotune_status", outcome.status)
        # Every finished trial carries the constraint (set once: Optuna ignores a second value).
        trial.set_constraint("memory", 1.0 if outcome.status == RunStatus.OOM else 0.0)

    def _baseline_sets_the_target(self) -> None:
        """The first baseline to finish fixes the study's bar (its task says which: a target, or
        an accuracy guard) from the metric it measured."""
        context, state, result = self.context, self.state, self.result
        if state.target is not None or not context.objective.needs_target:
            return
        if result.get("metric_value") is None:
            state.fail(f"the baseline measured no {context.metric.name}, so the study has no target")
            raise TrialFailed(state.fatal)
        bar = context.task.target_from_baseline(context.metric, result, context.spec)
        state.set_target(bar.target)
        for key, value in bar.attrs.items():
            state.study.set_user_attr(key, value)
        state.study.set_user_attr("target", bar.target)
        self.owner.events.emit("target", bar.said, self.trial.number, target=bar.target, metric=context.metric.name)

    def _baseline_time_to_target(self) -> None:
        """A baseline that was not stopped at the target still passed it: when, from its curve."""
        target, result = self.state.target, self.result
        if target is None or result.get("time_to_target") is not None:
            return
        hit = [p for p in result.get("curve", []) if self.context.metric.reached(p.get("value"), target)]
        if not hit:
            return
        result["time_to_target"] = hit[0]["train_time"]
        result["projected_time_to_target"] = hit[0].get("projected")
        for key in ("time_to_target", "projected_time_to_target"):
            if result[key] is not None:
                self.trial.set_user_attr(key, result[key])

    def _judge(self) -> None:
        """The trial against its task's bar: Optuna's accuracy constraint, feasible, why not."""
        context, trial = self.context, self.trial
        reference = self.state.study.user_attrs.get("reference_metric")
        verdict = context.task.judge(context.objective, self.result.get("metric_value"), self.state.target,
                                     reference, context.spec)
        if verdict.drop is not None:
            trial.set_user_attr("metric_drop", verdict.drop)
        if verdict.constraint is not None:
            trial.set_constraint("accuracy", verdict.constraint)
        if verdict.feasible is not None:
            trial.set_user_attr("feasible", verdict.feasible)
        if verdict.reason is not None:
            trial.set_user_attr("reason", verdict.reason)

    def _earned(self) -> Any:
        """The objective value(s), or TrialPruned for a run that earned none (target missed)."""
        context, result = self.context, self.result
        values = context.objective.values(result)
        if not self.is_baseline:
            baseline = self.state.baseline_trial()
            values = context.task.trial_value(values, result, baseline.user_attrs if baseline is not None else {})
        if values is not None:
            return values
        reached = result.get("metric_value")
        shown = "nothing" if reached is None else f"{reached:.4g}"
        reason = (f"did not reach the target {context.metric.bound(self.state.target)} within "
                  f"{context.spec.budget_text} (reached {shown})")
        self.trial.set_user_attr("autotune_status", RunStatus.PRUNED.value)
        self.trial.set_user_attr("reason", reason)
        if context.objective.prunes_slower_than_best and not context.objective.multi:
            # It never reached the target: its time to it is unbounded, and Optuna takes a
            # pruned trial's last report as its value, which must not read as a win
            self.trial.report(math.inf, len(result.get("curve", [])))
        raise optuna.TrialPruned(reason)
