"""One trial of a study, as Optuna's objective: claim a slot, resolve the settings, run the trial
process, report validations for pruning, and record what it measured."""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import optuna

from autotune.formatting import settings_text
from autotune.run.plan import OUT_OF_MEMORY_ROWS
from autotune.launch.trial_process import TrialOutcome, launch
from autotune.settings import resolve_settings
from autotune.statuses import FAILED_RUN_STATUSES, TRIAL_METRICS, RunStatus
from autotune.study import retries
from autotune.study.slots import GiveWay, is_priority

if TYPE_CHECKING:
    from autotune.study.runner import StudyRunner

# Settings that barely change activation memory: ignored when deciding whether a configuration
# lies in a region that already ran out of memory.
MEMORY_NEUTRAL = {"learning_rate", "momentum", "weight_decay", "beta2", "workers", "threads", "pruning"}
# How often a running trial's "live" user attr (what other machines see of it) is rewritten.
LIVE_INTERVAL = 5.0

# The baseline recipe is enqueued as fixed params and may lie outside the space searched (a batch
# size below the space's low, say): it runs as given, on purpose, and Optuna's warning about it
# tells the user nothing they could act on.
warnings.filterwarnings("ignore", message=r"Fixed parameter .* is out of range", category=UserWarning)


# A baseline that fails runs again this many times before the study gives up (its trial process
# was killed, the machine ran out of memory once: one failure must not ruin the study).
MAX_BASELINE_RETRIES = 2


# The least margin by which a trial must be slower than the best before it is pruned for it:
# two runs of one configuration on an idle machine differ by a few percent.
MIN_NOISE_MARGIN = 0.10
MAX_NOISE_MARGIN = 1.0


def noise_margin(baseline: "optuna.trial.FrozenTrial | None") -> float:
    """How much slower than the best a trial may be before the slower-than-best rule prunes it:
    the spread of the baseline's own step times, (p95 - p50) / p50, which is how much the
    machine's load moved its steps about (a busy machine's is large), between MIN_NOISE_MARGIN
    and MAX_NOISE_MARGIN."""
    attrs = baseline.user_attrs if baseline is not None else {}
    p50, p95 = attrs.get("step_time_p50"), attrs.get("step_time_p95")
    if not p50 or p95 is None:
        return MIN_NOISE_MARGIN
    return min(MAX_NOISE_MARGIN, max(MIN_NOISE_MARGIN, (p95 - p50) / p50))


def beyond(seconds: float, best: float | None, margin: float) -> bool:
    """Whether `seconds` without reaching the target is already slower than the best by more
    than the noise margin: a trial within the noise of the best may still turn out faster."""
    return best is not None and seconds > best * (1.0 + margin)


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
        failed = (t.user_attrs.get("notes") or {}).get(OUT_OF_MEMORY_ROWS)
        if failed is None and t.user_attrs.get("autotune_status") == RunStatus.OOM and "batch_size" in other:
            failed = micro_batch_rows(other)
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


class TrialFailed(Exception):
    """Raised inside the objective so Optuna records FAIL and the study goes on."""


class TrialObjective:
    """Optuna's objective for one runner's trials; the runner holds the study's state."""

    def __init__(self, runner: "StudyRunner") -> None:
        self.runner = runner

    def __call__(self, trial: optuna.Trial) -> Any:
        r = self.runner
        assert r.study is not None
        is_baseline = bool(trial.user_attrs.get("baseline"))
        try:
            self._take_slot(trial, is_baseline)
        except KeyboardInterrupt:
            self._surplus(trial, "not run: interrupted while waiting for a slot", requeue=True)
            raise
        suggested = r.p.space.suggest(trial)
        overrides = dict(r.baseline) if is_baseline else r.fit_threads(suggested)
        settings = resolve_settings(r.p.registry, r.p.hardware, r.p.workload, overrides)
        trial.set_user_attr("settings", settings)
        trial.set_user_attr("baseline", is_baseline)
        trial.set_user_attr("runner", retries.RUNNER_ID)
        name = r.spec.name

        reason = self._infeasible(settings)
        if reason is not None:
            trial.set_user_attr("autotune_status", RunStatus.INFEASIBLE.value)
            trial.set_user_attr("reason", reason)
            trial.set_constraint("memory", 1.0)
            raise optuna.TrialPruned(reason)

        best = r.best_value()
        margin = noise_margin(r.baseline_trial())
        metric = r.p.metric
        prune_reason: list[str] = []

        def on_eval(point: dict[str, Any]) -> bool:
            value = r.objective.intermediate(point)
            if not r.objective.multi:
                trial.report(value, point["index"])
            if is_baseline:
                return False
            if r.objective.prunable and trial.should_prune():
                prune_reason.append(
                    f"pruned by the {r.spec.pruner} pruner after validation {point['index']} "
                    f"({r.p.metric.name} {point['value']:.4g})"
                )
                return True
            if r.objective.name == "time-to-accuracy" and beyond(value, best, margin):
                prune_reason.append(
                    f"pruned: {value:.2f} s (projected) of training without reaching the target "
                    f"{metric.bound(r.target)}, already slower than the best ({best:.2f} s) by more "
                    f"than the noise margin (+{margin:.0%})"
                )
                return True
            return False

        live_written = [-math.inf]

        def on_progress(progress: dict[str, Any]) -> None:
            r.store.trial_progress(
                name, trial.number, step=progress["step"], total_steps=progress["total_steps"],
                fraction=progress["fraction"], samples_per_s=progress["samples_per_s"],
                train_time=progress["train_time"], peak_memory_bytes=progress["peak_memory_bytes"],
            )
            r.events.emit("trial_progress", f"trial {trial.number} at step {progress['step']}", trial.number,
                          number=trial.number, **progress)
            # What other machines see of this trial, through the shared storage: throttled,
            # since each write is a round trip to the database.
            now = time.monotonic()
            if now - live_written[0] >= LIVE_INTERVAL:
                live_written[0] = now
                trial.set_user_attr("live", {
                    "samples_per_s": progress["samples_per_s"], "step": progress["step"],
                    "fraction": progress["fraction"], "updated": time.time(),
                })

        log_path = r.logs_dir / f"{trial.number}.log"
        request = r.request(overrides, is_baseline, str(log_path))
        r.store.trial_started(name, trial.number, None, settings)
        searched = {p.name for p in r.p.space.params}
        shown = {k: v for k, v in settings.items() if k in searched} or settings
        r.events.emit("trial_started", f"trial {trial.number} started: {settings_text(shown)}", trial.number,
                      number=trial.number, settings=settings, baseline=is_baseline)
        try:
            with r.lease() as gpus:
                r.use_gpus(request, gpus)
                outcome = launch(
                    request,
                    on_eval=on_eval,
                    on_progress=on_progress,
                    should_kill=lambda: r.store.kill_requested(name, trial.number),
                    on_start=lambda pid: r.store.trial_progress(name, trial.number, pid=pid),
                )
        except KeyboardInterrupt:
            trial.set_user_attr("autotune_status", RunStatus.INTERRUPTED.value)
            trial.set_user_attr("reason", "interrupted (SIGINT/SIGTERM); it will run again on resume")
            raise
        finally:
            r.store.trial_finished(name, trial.number)
        return self._record(trial, outcome, is_baseline, prune_reason)

    # before the run ------------------------------------------------------------------------------

    def _take_slot(self, trial: optuna.Trial, is_baseline: bool) -> None:
        """Wait for the baseline's target if needed, then claim a slot; TrialPruned if this trial
        must not train (it is recorded as surplus and does not count)."""
        r = self.runner
        assert r.study is not None
        if r.fatal is not None:
            raise self._surplus(trial, f"not run: {r.fatal}")
        if not is_baseline and r.objective.needs_target and r.target is None:
            try:
                r.target = r.slots.wait_for_target(r.study, r.should_stop)
            except GiveWay as exc:
                raise self._surplus(trial, str(exc), requeue=True) from None
        if r.should_stop():
            raise self._surplus(trial, "not run: the study was stopping", requeue=True)
        if not r.slots.claim(r.study, trial):
            raise self._surplus(trial, f"not run: the study already has its {r.spec.n_trials} trials")

    def _surplus(self, trial: optuna.Trial, reason: str, requeue: bool = False) -> optuna.TrialPruned:
        """Mark a trial that never trained; it does not count. With `requeue`, a trial that must
        run (baseline, retry) is enqueued again so that stopping does not lose it."""
        study = self.runner.study
        assert study is not None
        trial.set_user_attr("autotune_status", RunStatus.SURPLUS.value)
        trial.set_user_attr("reason", reason)
        trials = study.get_trials(deepcopy=False)
        frozen = next((t for t in trials if t.number == trial.number), None)
        if requeue and frozen is not None and is_priority(frozen):
            retries.requeue(study, frozen, trials)
        return optuna.TrialPruned(reason)

    def _infeasible(self, settings: dict[str, Any]) -> str | None:
        study = self.runner.study
        assert study is not None
        return infeasible(settings, study.get_trials(deepcopy=False, states=FINISHED_STATES))

    # after the run -------------------------------------------------------------------------------

    def _baseline_failed(self, trial: optuna.Trial, reason: str) -> None:
        """The baseline fixes the target and every speedup: run it again, at most
        MAX_BASELINE_RETRIES times; after that the study cannot go on (runner.fatal).

        The retry is enqueued while this trial still runs, so no other trial sees "no baseline
        pending" in between and goes ahead without a target."""
        r = self.runner
        assert r.study is not None
        trials = r.study.get_trials(deepcopy=False)
        earlier = [t for t in trials if t.user_attrs.get("baseline") and t.state == optuna.trial.TrialState.FAIL
                   and t.number != trial.number]
        if len(earlier) < MAX_BASELINE_RETRIES:
            frozen = next(t for t in trials if t.number == trial.number)
            retries.requeue(r.study, frozen, trials)
            r.events.emit("trial_retried", f"trial {trial.number} (the baseline) failed: {reason}; running it again",
                          trial.number, number=trial.number)
            return
        r.fatal = (
            f"the baseline failed {len(earlier) + 1} times (trials "
            f"{', '.join(str(t.number) for t in [*earlier, trial])}), last: {reason}; without it the study "
            f"has no target and no speedup to measure"
        )

    def _record(
        self, trial: optuna.Trial, outcome: TrialOutcome, is_baseline: bool, prune_reason: list[str]
    ) -> Any:
        r = self.runner
        result = outcome.result or {}
        for key in TRIAL_METRICS:
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        trial.set_user_attr("log_tail", outcome.log_tail[-4000:])
        # The metric at each validation (Optuna's intermediate values are in the objective's
        # units, seconds for time-to-accuracy): [epoch, value, projected seconds]
        trial.set_user_attr("curve", [
            [p.get("epoch"), p.get("value"), p.get("projected")] for p in result.get("curve", [])
        ])
        trial.set_user_attr("autotune_status", outcome.status)
        # Every finished trial carries the constraint (set once: Optuna ignores a second value).
        trial.set_constraint("memory", 1.0 if outcome.status == RunStatus.OOM else 0.0)
        number = trial.number

        if outcome.status in FAILED_RUN_STATUSES:
            reason = outcome.error or outcome.status
            trial.set_user_attr("reason", reason)
            if is_baseline:
                self._baseline_failed(trial, reason)
            raise TrialFailed(reason)

        metric = r.p.metric
        if is_baseline and r.target is None and r.objective.needs_target:
            if result.get("metric_value") is None:
                r.fatal = f"the baseline measured no {metric.name}, so the study has no target"
                raise TrialFailed(r.fatal)
            assert r.study is not None
            if r.objective.task == "inference":
                # the accuracy guard: the unoptimized model's own value, less --max-drop of it
                r.target = metric.guard(result["metric_value"], r.spec.max_drop)
                r.study.set_user_attr("reference_metric", result["metric_value"])
                said = f"accuracy guard from the unoptimized model: {metric.bound(r.target)} (at most " \
                       f"{r.spec.max_drop:.1%} worse than its {result['metric_value']:.4g})"
            else:
                r.target = metric.target_from(result["metric_value"], result.get("val_samples"))
                said = f"target set from the baseline: {metric.bound(r.target)}"
            r.study.set_user_attr("target", r.target)
            r.events.emit("target", said, number, target=r.target, metric=metric.name)
        if is_baseline and r.target is not None and result.get("time_to_target") is None:
            hit = [p for p in result.get("curve", []) if metric.reached(p.get("value"), r.target)]
            if hit:
                result["time_to_target"] = hit[0]["train_time"]
                result["projected_time_to_target"] = hit[0].get("projected")
                for key in ("time_to_target", "projected_time_to_target"):
                    if result[key] is not None:
                        trial.set_user_attr(key, result[key])

        if outcome.status == RunStatus.PRUNED:
            reason = prune_reason[0] if prune_reason else "pruned"
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)

        reached = result.get("metric_value")
        if r.objective.task == "inference":
            guard(r, trial, reached)
        elif r.objective.name == "throughput" and r.target is not None:
            # Optuna's constraint: feasible when <= 0
            if reached is None or not math.isfinite(reached):
                shortfall = 1e9
            else:
                shortfall = r.target - reached if metric.higher_is_better else reached - r.target
            trial.set_constraint("accuracy", shortfall)
            trial.set_user_attr("feasible", metric.reached(reached, r.target))
        values = r.objective.values(result)
        if r.objective.task == "inference" and not is_baseline:
            values = paired_latency(r, result, values)
        if values is None:
            shown = "nothing" if reached is None else f"{reached:.4g}"
            reason = (
                f"did not reach the target {metric.bound(r.target)} within "
                f"{r.spec.budget_text} (reached {shown})"
            )
            trial.set_user_attr("autotune_status", RunStatus.PRUNED.value)
            trial.set_user_attr("reason", reason)
            if r.objective.name == "time-to-accuracy" and not r.objective.multi:
                # It never reached the target: its time to it is unbounded, and Optuna takes a
                # pruned trial's last report as its value, which must not read as a win
                trial.report(math.inf, len(result.get("curve", [])))
            raise optuna.TrialPruned(reason)
        return values


def paired_latency(r: "StudyRunner", result: dict[str, Any], measured: Any) -> Any:
    """An inference trial's value: the unoptimized model's latency (trial 0's) over the trial's
    speed against it timed in the same process (`paired_speedup`, autotune.inference.serve.
    pair_with): its latency on the baseline's clock, so that machine drift between trial
    processes does not pick the best. The trial's own measured latency when it has no pairing."""
    baseline = r.baseline_trial()
    base = baseline.user_attrs.get("latency_p50") if baseline is not None else None
    speedup = result.get("paired_speedup")
    if not base or not speedup or not math.isfinite(speedup) or speedup <= 0:
        return measured
    return base / speedup


def guard(r: "StudyRunner", trial: optuna.Trial, reached: float | None) -> None:
    """An inference trial against the accuracy guard: its metric's relative drop from the
    unoptimized model's (user attr metric_drop), and infeasible (Optuna's constraint, user attr
    feasible, a reason; never the best) when it drops more than --max-drop."""
    assert r.study is not None
    metric, reference = r.p.metric, r.study.user_attrs.get("reference_metric")
    drop = None
    if reached is not None and reference is not None and math.isfinite(reached):
        drop = metric.drop(reference, reached)
        trial.set_user_attr("metric_drop", drop)
    feasible = drop is not None and drop <= r.spec.max_drop + 1e-12
    trial.set_constraint("accuracy", 0.0 if feasible else (drop if drop is not None and drop > 0 else 1.0))
    trial.set_user_attr("feasible", feasible)
    if not feasible:
        shown = "nothing" if reached is None else f"{reached:.4g}"
        worse = f", {drop:.2%} worse" if drop is not None else ""
        base = "-" if reference is None else f"{reference:.4g}"
        trial.set_user_attr("reason", f"infeasible: {metric.name} {shown}{worse} than the unoptimized model's "
                                      f"{base} (the guard allows {r.spec.max_drop:.1%})")
