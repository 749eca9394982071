"""A study: Optuna searches the knob space of a workload, one isolated training process per trial.

Lifecycle: validate everything (nothing is written on bad input) -> create or resume the Optuna
study -> run the baseline recipe first (it fixes the target accuracy and every speedup) -> let
Optuna propose the rest -> confirm the best against the baseline with repeated runs -> report.
Results live with the trials in Optuna's storage (user attributes); live progress and events go
to autotune's local Store so other processes can watch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import socket
import statistics
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.config import baseline_settings, resolve_settings
from autotune.errors import UsageError
from autotune.hardware import Hardware, detect
from autotune.home import autotune_home
from autotune.objectives import Objective, get_objective
from autotune.registry import Registry, load_registry
from autotune.spec import StudySpec
from autotune.storage import default_storage_url, open_storage, pid_alive  # noqa: F401  (re-exported)
from autotune.store import Store
from autotune.trial_process import TrialOutcome, TrialRequest, launch
from autotune.storage import display_url, sqlalchemy_url
from autotune.worker import SURPLUS, GiveWay, StudySlots, is_priority
from autotune.workloads import Workload, load_workload

if TYPE_CHECKING:
    from autotune.devices import DevicePool

logger = logging.getLogger(__name__)

TRIAL_METRICS = (
    "throughput", "step_time_p50", "step_time_p95", "data_wait_fraction", "peak_memory_bytes",
    "val_loss", "val_accuracy", "nonzero_fraction", "wall_time", "train_time", "val_time", "time_to_target",
    "steps", "epochs",
)
FAILED_STATUSES = ("failed", "oom", "unsupported", "diverged", "crashed", "error", "killed")
# Settings that barely change activation memory: ignored when deciding whether a configuration
# lies in a region that already ran out of memory.
MEMORY_NEUTRAL = {"learning_rate", "momentum", "weight_decay", "beta2", "workers", "threads", "pruning"}
# How often a running trial's "live" user attr (what other machines see of it) is rewritten.
LIVE_INTERVAL = 5.0


class TrialFailed(Exception):
    """Raised inside the objective so Optuna records FAIL and the study goes on."""


RUNNER_ID = f"{socket.gethostname()}:{os.getpid()}"


def counted_trials(study: optuna.Study) -> int:
    """Trials that count toward --n-trials: finished ones, minus those retried under a new number
    and those that never trained because the study already had its count (autotune_status
    "surplus", see autotune.worker)."""
    return counted_in(study.get_trials(deepcopy=False))


def counted_in(trials: list[FrozenTrial]) -> int:
    # Retries: ours carry user attr retry_of; Optuna's RetryHeartbeatStaleTrialCallback sets
    # system attrs failed_trial (the first trial of the chain) and retry_history (all of it).
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        retried.add(t.system_attrs.get("failed_trial"))
        retried.update(t.system_attrs.get("retry_history", ()))
    return sum(
        1
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and t.number not in retried
        and t.user_attrs.get("autotune_status") != SURPLUS
    )


def recover_stale_trials(study: optuna.Study, store: Store | None = None) -> list[int]:
    """Fail RUNNING trials whose runner process on this host is gone, and enqueue them once more.

    Trials of runners on other machines are left to Optuna's heartbeats.
    """
    host = socket.gethostname()
    recovered = []
    storage = study._storage  # the public BaseStorage API below needs the study's own storage
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        runner = t.user_attrs.get("runner", "")
        runner_host, _, pid = runner.rpartition(":")
        if runner_host != host or not pid.isdigit() or pid_alive(int(pid)) and int(pid) != os.getpid():
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(trial_id, "autotune_status", "stale")
        storage.set_trial_user_attr(trial_id, "reason", f"its runner (pid {pid}) died during the trial")
        study.tell(t.number, state=TrialState.FAIL)
        if t.user_attrs.get("retry_of") is None:
            attrs = {"retry_of": t.number}
            if t.user_attrs.get("baseline"):
                attrs["baseline"] = True
            study.enqueue_trial(t.params, user_attrs=attrs)
        recovered.append(t.number)
        if store is not None:
            store.trial_finished(study.study_name, t.number)
            store.add_event(study.study_name, "trial_failed",
                            f"trial {t.number} failed: its runner (pid {pid}) died; retrying it", t.number)
    return recovered


def _make_pruner(name: str, evals_per_epoch: int, epochs: int) -> optuna.pruners.BasePruner:
    """Pruners count validations; none judges a trial before it has trained a full epoch."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=evals_per_epoch)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=evals_per_epoch, max_resource=max(3 * evals_per_epoch, epochs * evals_per_epoch)
        )
    return optuna.pruners.NopPruner()


@dataclass
class Prepared:
    """Everything validated before anything is written."""

    spec: StudySpec
    objective: Objective
    registry: Registry
    hardware: Hardware
    workload: Workload
    space: Any
    storage_url: str
    storage: optuna.storages.RDBStorage


def prepare(spec: StudySpec, check_hardware: Callable[[Hardware], None] | None = None) -> Prepared:
    """Validate a spec completely. Raises UsageError; writes nothing.

    `check_hardware(hardware)` lets a caller validate its own options against the machine
    (GPUs per trial) before the storage is opened, which creates an SQLite file.
    """
    from autotune.space import load_space

    spec.validate()
    objective = get_objective(spec.objective)
    registry = load_registry(plugin_paths=spec.plugin_paths, disabled_knobs=spec.disabled_knobs)
    device_type = (spec.device or "").split(":")[0] or None
    if device_type:
        from autotune.hardware import available_device_types

        if device_type not in available_device_types():
            raise UsageError(f"--device {spec.device}: not available here")
    hardware = detect(device_type)
    if check_hardware is not None:
        check_hardware(hardware)
    workload = load_workload(spec.workload, registry, data_dir=spec.data_dir)
    space_name = spec.space or {"cuda": "gpu", "cpu": "cpu"}.get(hardware.device_type, "default")
    space = load_space(space_name, registry, hardware)
    spec.space = space_name
    storage_url = sqlalchemy_url(spec.storage or default_storage_url())
    return Prepared(
        spec=spec, objective=objective, registry=registry, hardware=hardware, workload=workload,
        space=space, storage_url=storage_url, storage=open_storage(storage_url),
    )


def fit_to_devices(prepared: Prepared, devices: "DevicePool") -> None:
    """A trial sees only the GPUs it leases, renumbered from 0: describe and search what one
    trial can use (data_parallel needs 2+ GPUs in the trial, not on the machine)."""
    hardware = prepared.hardware
    if not hardware.is_cuda or not devices.per_trial or hardware.device_count == devices.per_trial:
        return
    from autotune.space import load_space

    prepared.hardware = dataclasses.replace(hardware, device_count=devices.per_trial)
    prepared.space = load_space(str(prepared.spec.space), prepared.registry, prepared.hardware)


Reporter = Callable[[str, dict[str, Any]], None]


class StudyRunner:
    """Runs one study to its trial count (or timeout), then confirms and reports.

    Other runners (`autotune worker`, on this machine or others) may share the study: trials are
    counted through shared slots (autotune.worker.StudySlots), so together they finish exactly
    `n_trials`. `devices` hands each trial its own GPUs (CUDA_VISIBLE_DEVICES).
    """

    def __init__(
        self,
        prepared: Prepared,
        store: Store,
        reporter: Reporter | None = None,
        stop_event: threading.Event | None = None,
        devices: "DevicePool | None" = None,
    ) -> None:
        if devices is not None:
            fit_to_devices(prepared, devices)
        self.p = prepared
        self.spec = prepared.spec
        self.objective = prepared.objective
        self.store = store
        self.report_fn = reporter or (lambda kind, data: None)
        self.stop_event = stop_event or threading.Event()
        self.baseline = baseline_settings(prepared.registry, prepared.hardware, prepared.workload)
        self.study: optuna.Study | None = None
        self.target: float | None = prepared.spec.target
        self._best_lock = threading.Lock()
        self.logs_dir = autotune_home() / "logs" / "trials" / self.spec.name
        self.devices = devices
        # Runners sharing a seeded study must not share a sampler seed (each would propose the
        # same configurations): autotune.worker gives each worker its own.
        self.sampler_seed = prepared.spec.seed
        self.slots = StudySlots(prepared.storage, self.spec.name, self.spec.n_trials)
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # autotune reports trials itself, with reasons; Optuna's own lines would repeat them.
            optuna.logging.set_verbosity(optuna.logging.ERROR)

    # setup -----------------------------------------------------------------------------------

    def open(self, create: bool = True) -> optuna.Study:
        """Create the study, or resume it when the name exists (with a compatible spec).

        Only the runner that creates the study enqueues the baseline, so runners starting at
        once enqueue it once. `create=False` (workers) only loads: UsageError if it is missing.
        """
        storage = self.p.storage
        directions = list(self.objective.directions)
        sampler = optuna.samplers.TPESampler(seed=self.sampler_seed)
        pruner = _make_pruner(self.spec.pruner, self.objective.evals_per_epoch, self.spec.budget.get("epochs") or 5)
        existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
        created = lost_race = False
        if self.spec.name not in existing and not create:
            raise UsageError(
                f"no study '{self.spec.name}' in {display_url(self.p.storage_url)}: create it first with "
                f"`autotune study start --name {self.spec.name} --storage URL ...`"
            )
        if self.spec.name not in existing:
            try:
                study = optuna.create_study(
                    study_name=self.spec.name, storage=storage, sampler=sampler, pruner=pruner,
                    directions=directions,
                )
                created = True
            except optuna.exceptions.DuplicatedStudyError:  # another runner created it just now
                lost_race = True
        if not created:
            study = optuna.load_study(study_name=self.spec.name, storage=storage, sampler=sampler, pruner=pruner)
            stored = study.user_attrs.get("autotune", {})
            for key in ("workload", "objective"):
                if stored.get(key) not in (None, getattr(self.spec, key)):
                    raise UsageError(
                        f"study '{self.spec.name}' exists with {key} '{stored[key]}', not "
                        f"'{getattr(self.spec, key)}'; pick another --name or `autotune study delete {self.spec.name}`"
                    )
            if self.target is None:
                self.target = study.user_attrs.get("target")
        else:
            study.set_user_attr("autotune", {
                **self.spec.to_dict(), "budget_text": self.spec.budget_text,
                "directions": directions,
            })
            study.set_user_attr("hardware", self.p.hardware.to_dict())
            study.set_user_attr("target", self.target)
        self.study = study
        self.store.put_study(
            self.spec.name, storage=self.p.storage_url, workload=self.spec.workload,
            space=str(self.spec.space), objective=self.spec.objective, n_trials=self.spec.n_trials,
            spec=self.spec.to_dict(), status="running",
        )
        self.store.set_study_status(self.spec.name, "running", pid=os.getpid())
        recover_stale_trials(study, self.store)
        # Resuming with no baseline at all (its creator died before enqueueing it) is the only
        # other case; workers and a runner that lost the race to create never enqueue it.
        if created or create and not lost_race and not any(
            t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)
        ):
            params = {
                p.name: self.baseline[p.name]
                for p in self.p.space.params
                if p.name in self.baseline and p.active(self.baseline)
            }
            study.enqueue_trial(params, user_attrs={"baseline": True})
        return study

    # the objective ---------------------------------------------------------------------------

    def _best_value(self) -> float | None:
        assert self.study is not None
        if self.objective.multi:
            return None
        values = [
            t.value for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and t.user_attrs.get("feasible", True)
        ]
        if not values:
            return None
        return min(values) if self.objective.directions[0] == "minimize" else max(values)

    def _infeasible(self, settings: dict[str, Any]) -> str | None:
        """A configuration at or above a batch size that already ran out of memory."""
        assert self.study is not None
        batch = settings.get("batch_size")
        if batch is None:
            return None
        mine = {k: v for k, v in settings.items() if k not in MEMORY_NEUTRAL and k != "batch_size"}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.FAIL, TrialState.PRUNED)):
            if t.user_attrs.get("autotune_status") != "oom":
                continue
            other = t.user_attrs.get("settings", {})
            theirs = {k: v for k, v in other.items() if k not in MEMORY_NEUTRAL and k != "batch_size"}
            if theirs == mine and batch >= other.get("batch_size", math.inf):
                return (
                    f"infeasible: batch_size {batch} >= {other['batch_size']}, which ran out of "
                    f"memory in trial {t.number} with the same settings"
                )
        return None

    def _should_stop(self) -> bool:
        return self.stop_event.is_set() or self.store.study_status(self.spec.name) == "stopping"

    def _surplus(self, trial: optuna.Trial, reason: str, requeue: bool = False) -> optuna.TrialPruned:
        """Mark a trial that never trained; it does not count. With `requeue`, a trial that must
        run (baseline, retry) is enqueued again so that stopping does not lose it."""
        assert self.study is not None
        trial.set_user_attr("autotune_status", SURPLUS)
        trial.set_user_attr("reason", reason)
        frozen = next((t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number), None)
        if requeue and frozen is not None and is_priority(frozen):
            attrs: dict[str, Any] = {"retry_of": trial.number}
            if frozen.user_attrs.get("baseline"):
                attrs["baseline"] = True
            self.study.enqueue_trial(frozen.system_attrs.get("fixed_params") or frozen.params, user_attrs=attrs)
        return optuna.TrialPruned(reason)

    def _take_slot(self, trial: optuna.Trial, is_baseline: bool) -> None:
        """Wait for the baseline's target if needed, then claim a slot; TrialPruned if this trial
        must not train (it is recorded as surplus and does not count)."""
        assert self.study is not None
        if not is_baseline and self.objective.needs_target and self.target is None:
            try:
                self.target = self.slots.wait_for_target(self.study, self._should_stop)
            except GiveWay as exc:
                raise self._surplus(trial, str(exc), requeue=True) from None
        if self._should_stop():
            raise self._surplus(trial, "not run: the study was stopping", requeue=True)
        if not self.slots.claim(self.study, trial):
            raise self._surplus(trial, f"not run: the study already has its {self.spec.n_trials} trials")

    def objective_fn(self, trial: optuna.Trial) -> Any:
        assert self.study is not None
        is_baseline = bool(trial.user_attrs.get("baseline"))
        try:
            self._take_slot(trial, is_baseline)
        except KeyboardInterrupt:
            self._surplus(trial, "not run: interrupted while waiting for a slot", requeue=True)
            raise
        suggested = self.p.space.suggest(trial)
        overrides = dict(self.baseline) if is_baseline else suggested
        settings = resolve_settings(self.p.registry, self.p.hardware, self.p.workload, overrides)
        trial.set_user_attr("settings", settings)
        trial.set_user_attr("baseline", is_baseline)
        trial.set_user_attr("runner", RUNNER_ID)
        name = self.spec.name

        reason = self._infeasible(settings)
        if reason is not None:
            trial.set_user_attr("autotune_status", "infeasible")
            trial.set_user_attr("reason", reason)
            trial.set_constraint("memory", 1.0)
            self._event("trial_pruned", f"trial {trial.number} skipped: {reason}", trial.number)
            raise optuna.TrialPruned(reason)

        best = self._best_value()
        prune_reason: list[str] = []

        def on_eval(point: dict[str, Any]) -> bool:
            value = self.objective.intermediate(point)
            if not self.objective.multi:
                trial.report(value, point["index"])
            if is_baseline:
                return False
            if self.objective.prunable and trial.should_prune():
                prune_reason.append(
                    f"pruned by the {self.spec.pruner} pruner after validation {point['index']} "
                    f"(accuracy {point['val_accuracy']:.3f})"
                )
                return True
            if self.objective.name == "time-to-accuracy" and best is not None and point["train_time"] > best:
                prune_reason.append(
                    f"pruned: {point['train_time']:.2f} s of training without reaching the target, "
                    f"already slower than the best ({best:.2f} s)"
                )
                return True
            return False

        live_written = [-math.inf]

        def on_progress(progress: dict[str, Any]) -> None:
            self.store.trial_progress(
                name, trial.number, step=progress["step"], total_steps=progress["total_steps"],
                fraction=progress["fraction"], samples_per_s=progress["samples_per_s"],
                train_time=progress["train_time"], peak_memory_bytes=progress["peak_memory_bytes"],
            )
            # What other machines see of this trial, through the shared storage: throttled,
            # since each write is a round trip to the database.
            now = time.monotonic()
            if now - live_written[0] >= LIVE_INTERVAL:
                live_written[0] = now
                trial.set_user_attr("live", {
                    "samples_per_s": progress["samples_per_s"], "step": progress["step"],
                    "fraction": progress["fraction"], "updated": time.time(),
                })

        log_path = self.logs_dir / f"{trial.number}.log"
        request = self._request(overrides, is_baseline, str(log_path))
        self.store.trial_started(name, trial.number, None, settings)
        self._event("trial_started", f"trial {trial.number} started: {_short(settings, self.p.space)}", trial.number)
        self.report_fn("trial_started", {"number": trial.number, "settings": settings, "baseline": is_baseline})
        try:
            with self._lease() as gpus:
                self._use_gpus(request, gpus)
                outcome = launch(
                    request,
                    on_eval=on_eval,
                    on_progress=on_progress,
                    should_kill=lambda: self.store.kill_requested(name, trial.number),
                    on_start=lambda pid: self.store.trial_progress(name, trial.number, pid=pid),
                )
        except KeyboardInterrupt:
            trial.set_user_attr("autotune_status", "interrupted")
            trial.set_user_attr("reason", "interrupted (SIGINT/SIGTERM); it will run again on resume")
            raise
        finally:
            self.store.trial_finished(name, trial.number)
        return self._record(trial, outcome, is_baseline, prune_reason)

    def _lease(self) -> Any:
        """A device lease for one training process: its GPUs on CUDA, a concurrency slot on CPU."""
        return self.devices.lease() if self.devices is not None else nullcontext({})

    def _use_gpus(self, request: TrialRequest, gpus: dict[str, str]) -> None:
        """Point a trial at the GPUs it leased: inside the trial they are renumbered from 0."""
        if gpus and self.p.hardware.is_cuda:
            request.env.update(gpus)
            request.device = "cuda"

    def _request(self, overrides: dict[str, Any], is_baseline: bool, log_path: str) -> TrialRequest:
        threads = None
        parallel = max(self.spec.workers, self.devices.capacity if self.devices is not None else 1)
        if parallel > 1 and self.p.hardware.device_type == "cpu":
            # Trials running side by side split the cores instead of each taking them all.
            threads = max(1, self.p.hardware.cpu_count // parallel)
            if "threads" in self.p.registry.knobs:
                overrides = {**overrides, "threads": min(int(overrides.get("threads", threads)), threads)}
        return TrialRequest(
            workload=self.spec.workload, overrides=overrides, budget=dict(self.spec.budget),
            seed=self.spec.seed or 0, device=self.spec.device,
            target=None if is_baseline and self.target is None else self.target,
            stop_at_target=self.objective.stop_at_target and not is_baseline,
            evals_per_epoch=self.objective.evals_per_epoch,
            plugin_paths=self.spec.plugin_paths, disabled_knobs=self.spec.disabled_knobs,
            data_dir=self.spec.data_dir, threads=threads, log_path=log_path,
        )

    def _record(
        self, trial: optuna.Trial, outcome: TrialOutcome, is_baseline: bool, prune_reason: list[str]
    ) -> Any:
        result = outcome.result or {}
        for key in TRIAL_METRICS:
            if result.get(key) is not None:
                trial.set_user_attr(key, result[key])
        trial.set_user_attr("log_tail", outcome.log_tail[-4000:])
        trial.set_user_attr("autotune_status", outcome.status)
        # Every finished trial carries the constraint (set once: Optuna ignores a second value).
        trial.set_constraint("memory", 1.0 if outcome.status == "oom" else 0.0)
        number = trial.number

        if outcome.status in FAILED_STATUSES:
            reason = outcome.error or outcome.status
            trial.set_user_attr("reason", reason)
            self._event("trial_failed", f"trial {number} failed: {reason}", number)
            raise TrialFailed(reason)

        if is_baseline and self.target is None and self.objective.needs_target:
            self.target = round(max(0.0, (result.get("val_accuracy") or 0.0) - 0.005), 4)
            assert self.study is not None
            self.study.set_user_attr("target", self.target)
            self._event("target", f"target accuracy set from the baseline: {self.target:.4f}", number)
        if is_baseline and self.target is not None and result.get("time_to_target") is None:
            hit = [p for p in result.get("curve", []) if p["val_accuracy"] >= self.target]
            if hit:
                result["time_to_target"] = hit[0]["train_time"]
                trial.set_user_attr("time_to_target", result["time_to_target"])

        if outcome.status == "pruned":
            reason = prune_reason[0] if prune_reason else "pruned"
            trial.set_user_attr("reason", reason)
            self._event("trial_pruned", f"trial {number} {reason}", number)
            raise optuna.TrialPruned(reason)

        if self.objective.name == "throughput" and self.target is not None:
            accuracy = result.get("val_accuracy") or 0.0
            trial.set_constraint("accuracy", self.target - accuracy)
            trial.set_user_attr("feasible", accuracy >= self.target)
        values = self.objective.values(result)
        if values is None:
            reason = (
                f"did not reach the target accuracy {self.target} within {self.spec.budget_text} "
                f"(reached {result.get('val_accuracy', 0):.3f})"
            )
            trial.set_user_attr("autotune_status", "pruned")
            trial.set_user_attr("reason", reason)
            self._event("trial_pruned", f"trial {number} {reason}", number)
            raise optuna.TrialPruned(reason)
        return values

    # running ---------------------------------------------------------------------------------

    def _event(self, kind: str, message: str, trial: int | None = None) -> None:
        self.store.add_event(self.spec.name, kind, message, trial)

    def _after_trial(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        if frozen.user_attrs.get("autotune_status") != SURPLUS:  # it never ran: nothing to tell
            self._announce(study, frozen)
        done = counted_trials(study)
        if done >= self.spec.n_trials:
            study.stop()
            return
        status = self.store.study_status(self.spec.name)
        if status == "paused":
            self._event("study_paused", f"study paused after trial {frozen.number}")
            self.report_fn("paused", {})
            while status == "paused" and not self.stop_event.is_set():
                time.sleep(0.5)
                status = self.store.study_status(self.spec.name)
            if status == "running":
                self._event("study_resumed", "study resumed")
                self.report_fn("resumed", {})
        if status == "stopping" or self.stop_event.is_set() or not self._free_slot(study):
            study.stop()

    def _free_slot(self, study: optuna.Study) -> bool:
        """Wait (without holding a trial) while other runners hold every remaining slot. False:
        stop, the study has its count or a stop was asked for."""
        return self.slots.wait_for_slot(study, self._should_stop)

    def _announce(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        data = {
            "searched": [p.name for p in self.p.space.params],
            "number": frozen.number,
            "state": frozen.state.name,
            "value": frozen.value if not self.objective.multi and frozen.values else frozen.values,
            "reason": frozen.user_attrs.get("reason"),
            "settings": frozen.user_attrs.get("settings", {}),
            "baseline": frozen.user_attrs.get("baseline", False),
            "duration": frozen.duration.total_seconds() if frozen.duration else None,
            "done": counted_trials(study),
            "total": self.spec.n_trials,
        }
        if frozen.state == TrialState.COMPLETE:
            self._event("trial_complete", f"trial {frozen.number} complete: {_fmt_values(frozen.values)}", frozen.number)
            if not self.objective.multi:
                best = self._best_value()
                if best is not None and frozen.value == best:
                    data["new_best"] = True
                    self._event("new_best", f"new best: trial {frozen.number} = {best:.4g}", frozen.number)
        data["best"] = self._best_value()
        self.report_fn("trial_finished", data)

    def run(self, confirm: bool = True) -> dict[str, Any]:
        """Optimize to the trial count, confirm, and return the report. Re-raises KeyboardInterrupt.

        Trials are started until the study (all its runners together) has its count: the stop
        is shared (`_after_trial`), not a per-runner n_trials. `confirm=False` skips the final
        confirmation (workers leave it to `study start`).
        """
        study = self.study or self.open()
        name = self.spec.name
        self._event("study_started", f"study {name} running on {self.p.hardware.device_type}")
        started = time.time()
        try:
            remaining = self.spec.n_trials - counted_trials(study)
            if remaining > 0 and self.store.study_status(name) != "stopping" and self._free_slot(study):
                study.optimize(
                    self.objective_fn,
                    n_trials=None,
                    timeout=self.spec.timeout,
                    n_jobs=self.spec.workers,
                    catch=(TrialFailed,),
                    callbacks=[self._after_trial],
                    gc_after_trial=False,
                    show_progress_bar=False,
                )
        except KeyboardInterrupt:
            self._requeue_interrupted(study)
            self.store.set_study_status(name, "stopped")
            self._event("study_stopped", "study interrupted; resume it with the same command")
            raise
        except Exception as exc:
            self.store.set_study_status(name, "failed", error=str(exc))
            self._event("study_failed", f"study failed: {exc}")
            raise
        stopped = self.store.study_status(name) == "stopping" or self.stop_event.is_set()
        report = self.report(confirm=confirm and not stopped)
        report["elapsed"] = time.time() - started
        final = "stopped" if stopped and counted_trials(study) < self.spec.n_trials else "finished"
        self.store.set_study_status(name, final)
        self._event("study_finished", f"study {final}: {report['counts']}")
        return report

    def _requeue_interrupted(self, study: optuna.Study) -> None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
            if t.user_attrs.get("autotune_status") != "interrupted":
                continue
            if any(o.user_attrs.get("retry_of") == t.number for o in study.get_trials(deepcopy=False)):
                continue
            attrs: dict[str, Any] = {"retry_of": t.number}
            if t.user_attrs.get("baseline"):
                attrs["baseline"] = True
            study.enqueue_trial(t.params, user_attrs=attrs)

    # confirmation and report -----------------------------------------------------------------

    def best_trial(self) -> FrozenTrial | None:
        assert self.study is not None
        if self.objective.multi:
            return None
        complete = [
            t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and t.user_attrs.get("feasible", True)
        ]
        if not complete:
            return None
        key: Callable[[FrozenTrial], float] = lambda t: t.value  # noqa: E731
        return min(complete, key=key) if self.objective.directions[0] == "minimize" else max(complete, key=key)

    def baseline_trial(self) -> FrozenTrial | None:
        assert self.study is not None
        finished = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("baseline")]
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        return (complete or finished or [None])[0]

    def confirm(self, best: FrozenTrial, baseline: FrozenTrial) -> dict[str, Any]:
        """Re-run best and baseline side by side, alternating, with fresh seeds."""
        runs: list[dict[str, Any]] = []
        for i in range(self.spec.confirm):
            pair: dict[str, Any] = {"seed": (self.spec.seed or 0) + 1000 + i}
            for label, trial in (("baseline", baseline), ("best", best)):
                self.report_fn("confirming", {"which": label, "run": i + 1, "of": self.spec.confirm})
                request = self._request(trial.user_attrs["settings"], False, str(self.logs_dir / f"confirm-{label}-{i}.log"))
                request.seed = pair["seed"]
                request.target = self.target
                request.stop_at_target = self.objective.stop_at_target
                with self._lease() as gpus:
                    self._use_gpus(request, gpus)
                    outcome = launch(request)
                result = outcome.result or {}
                value = None
                if outcome.status == "ok" and not self.objective.multi:
                    value = self.objective.values(result)
                pair[label] = {"status": outcome.status, "value": value,
                               **{k: result.get(k) for k in ("throughput", "val_accuracy", "time_to_target", "peak_memory_bytes")}}
            if pair["best"]["value"] and pair["baseline"]["value"]:
                pair["speedup"] = self.objective.speedup(pair["best"]["value"], pair["baseline"]["value"])
            runs.append(pair)
        speedups = [r["speedup"] for r in runs if r.get("speedup") is not None]
        confirmation: dict[str, Any] = {
            "runs": runs, "best_number": best.number, "baseline_number": baseline.number,
            "repeats": self.spec.confirm, "valid_pairs": len(speedups),
        }
        if speedups:
            confirmation.update(
                speedup_median=statistics.median(speedups), speedup_min=min(speedups), speedup_max=max(speedups)
            )
        for label in ("best", "baseline"):
            values = [r[label]["value"] for r in runs if r[label]["value"] is not None]
            confirmation[f"{label}_value_median"] = statistics.median(values) if values else None
        assert self.study is not None
        self.study.set_user_attr("confirmation", confirmation)
        return confirmation

    def report(self, confirm: bool = True) -> dict[str, Any]:
        study = self.study
        assert study is not None
        trials = study.get_trials(deepcopy=False)
        surplus = [t for t in trials if t.user_attrs.get("autotune_status") == SURPLUS]
        trials = [t for t in trials if t.user_attrs.get("autotune_status") != SURPLUS]
        counts = {
            "complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(t.state == TrialState.FAIL for t in trials),
        }
        if surplus:
            counts["surplus"] = len(surplus)
        report: dict[str, Any] = {
            "study": self.spec.name, "workload": self.spec.workload, "objective": self.spec.objective,
            "space": self.spec.space, "target": self.target, "budget": self.spec.budget_text,
            "storage": self.p.storage_url, "device": self.p.hardware.device_type,
            "counts": counts, "trials": len(trials),
        }
        baseline = self.baseline_trial()
        if baseline is not None:
            report["baseline"] = _trial_summary(baseline)
        if self.objective.multi:
            report["pareto_front"] = [_trial_summary(t) for t in study.best_trials]
            return report
        best = self.best_trial()
        if best is None:
            report["best"] = None
            return report
        report["best"] = _trial_summary(best)
        if baseline is not None and baseline.state == TrialState.COMPLETE and baseline.value:
            report["speedup_in_search"] = self.objective.speedup(best.value, baseline.value)
        if confirm and self.spec.confirm > 0 and baseline is not None and best.number != baseline.number:
            report["confirmation"] = self.confirm(best, baseline)
        elif "confirmation" in study.user_attrs:
            report["confirmation"] = study.user_attrs["confirmation"]
        return report


def _trial_summary(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value if t.values and len(t.values) == 1 else t.values,
        "settings": t.user_attrs.get("settings", {}),
        "metrics": {k: t.user_attrs.get(k) for k in TRIAL_METRICS if t.user_attrs.get(k) is not None},
        "reason": t.user_attrs.get("reason"),
    }


def _fmt_values(values: list[float] | None) -> str:
    if not values:
        return "-"
    return ", ".join(f"{v:.4g}" for v in values)


def _short(settings: dict[str, Any], space: Any) -> str:
    searched = {p.name for p in space.params}
    shown = {k: v for k, v in settings.items() if k in searched} or settings
    return " ".join(f"{k}={_fmt_setting(v)}" for k, v in shown.items())


def _fmt_setting(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: the running trial is stopped and recorded, nothing is lost."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
