"""A study: Optuna searches the knob space of a workload, one isolated training process per trial.

Lifecycle: validate everything (autotune.study.prepare: nothing is written on bad input) ->
create or resume the Optuna study -> run the baseline recipe first (it fixes the target accuracy
and every speedup) -> let Optuna propose the rest (autotune.study.objective runs each trial) ->
confirm the best against the baseline with repeated runs (autotune.study.confirm) -> report.
Results live with the trials in Optuna's storage (user attributes); live progress and events go
to autotune's local Store so other processes can watch (autotune.study.events).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autotune.errors import RunError, UsageError
from autotune.formatting import values_text
from autotune.spec import StudySpec
from autotune.statuses import RunStatus, StudyStatus
from autotune.storage.local import Store
from autotune.storage.rdb import display_url, sqlite_path
from autotune.study import retries
from autotune.study.checkpoint import trained_model
from autotune.study.confirm import build_report
from autotune.study.context import StudyState, TrialContext
from autotune.study.enqueued import enqueue_all, trial_params
from autotune.study.events import Listener, StoreRecorder, StudyEvents
from autotune.study.launcher import TrialLauncher
from autotune.study.objective import TrialFailed, TrialObjective
from autotune.study.prepare import Prepared, fit_to_devices, make_pruner
from autotune.study.slots import StudySlots, counted_trials

if TYPE_CHECKING:
    from autotune.devices import DevicePool

logger = logging.getLogger(__name__)



class StudyRunner:
    """Runs one study to its trial count (or timeout), then confirms and reports.

    Other runners (`autotune worker`, on this machine or others) may share the study: trials are
    counted through shared slots (autotune.study.slots.StudySlots), so together they finish
    exactly `n_trials`. `devices` hands each trial its own GPUs (CUDA_VISIBLE_DEVICES).
    `listeners` watch the study's events besides the local Store (autotune.study.events).

    The parts it drives are handed what they need, not the runner: the read-only `context`,
    the shared `state`, the `launcher` of trial processes and the `events`.
    """

    def __init__(
        self,
        prepared: Prepared,
        store: Store,
        listeners: list[Listener] | tuple[Listener, ...] = (),
        stop_event: threading.Event | None = None,
        devices: "DevicePool | None" = None,
    ) -> None:
        if devices is not None:
            fit_to_devices(prepared, devices)
        self.prepared = prepared
        self.context = TrialContext.of(prepared)
        self.state = StudyState(prepared.objective, prepared.spec.target)
        self.store = store
        self.launcher = TrialLauncher(self.context, self.state, store, devices)
        self.events = StudyEvents(self.spec.name, [StoreRecorder(store), *listeners])
        self.stop_event = stop_event or threading.Event()
        self._storage_file: tuple[int, int] | None = None
        # Runners sharing a seeded study must not share a sampler seed (each would propose the
        # same configurations): autotune.study.worker gives each worker its own.
        self.sampler_seed = prepared.spec.seed
        self.slots = StudySlots(prepared.storage, self.spec.name, self.spec.n_trials)
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # autotune reports trials itself, with reasons; Optuna's own lines would repeat them.
            optuna.logging.set_verbosity(optuna.logging.ERROR)

    @property
    def spec(self) -> StudySpec:
        return self.context.spec

    @property
    def study(self) -> optuna.Study | None:
        return self.state.study if self.state.is_open else None

    @property
    def target(self) -> float | None:
        return self.state.target

    @property
    def baseline(self) -> dict[str, Any]:
        """The baseline recipe's settings."""
        return self.context.baseline

    # setup -----------------------------------------------------------------------------------

    def open(self, create: bool = True) -> optuna.Study:
        """Create the study, or resume it when the name exists (with a compatible spec).

        Only the runner that creates the study enqueues the baseline, so runners starting at
        once enqueue it once. `create=False` (workers) only loads: UsageError if it is missing.
        """
        if self.context.task.serves_model and self.prepared.source is not None and create:
            # before the study is created, so that its stored spec names the model it serves
            self.spec.checkpoint = trained_model(self.context, self.events, self.prepared.source)
        study, created, lost_race = self._create_or_load(create)
        self.state.opened(study)
        self._storage_file = _file_id(sqlite_path(self.context.storage_url))
        self._register(study)
        # Resuming with no baseline at all (its creator died before enqueueing it) is the only
        # other case; workers and a runner that lost the race to create never enqueue it.
        if created or create and not lost_race and not any(
            t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False)
        ):
            retries.enqueue(study, trial_params(self.context.space, self.baseline), baseline=True)
        if create and not lost_race:
            enqueue_all(study, self.prepared.enqueued)
        return study

    def _create_or_load(self, create: bool) -> tuple[optuna.Study, bool, bool]:
        """The Optuna study, and whether this runner created it or lost the race to."""
        storage, spec, objective = self.prepared.storage, self.spec, self.context.objective
        # Fewer random start-up trials than Optuna's 10 in a short study, so that TPE guides
        # most of a dozen trials instead of none.
        startup = min(10, max(4, spec.n_trials // 3))
        sampler = optuna.samplers.TPESampler(seed=self.sampler_seed, n_startup_trials=startup)
        pruner = make_pruner(spec.pruner, objective.evals_per_epoch, spec.budget.get("epochs") or 5)
        existing = {s.study_name for s in optuna.get_all_study_summaries(storage)}
        if spec.name not in existing and not create:
            raise UsageError(
                f"no study '{spec.name}' in {display_url(self.context.storage_url)}: create it first with "
                f"`autotune study start --name {spec.name} --storage URL ...`"
            )
        if spec.name not in existing:
            try:
                study = optuna.create_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner,
                                            directions=list(objective.directions))
                self._describe(study)
                return study, True, False
            except optuna.exceptions.DuplicatedStudyError:  # another runner created it just now
                lost_race = True
        else:
            lost_race = False
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
        self._check_resumable(study)
        return study, False, lost_race

    def _describe(self, study: optuna.Study) -> None:
        """What a new study records about itself: its spec, machine, target and metric."""
        study.set_user_attr("autotune", {
            **self.spec.to_dict(), "budget_text": self.spec.budget_text,
            "directions": list(self.context.objective.directions),
        })
        study.set_user_attr("hardware", self.context.hardware.to_dict())
        study.set_user_attr("target", self.state.target)
        study.set_user_attr("metric", self.context.metric.to_dict())
        with warnings.catch_warnings():  # experimental in Optuna's eyes; nothing a user can act on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(self.context.objective.metric_names())

    def _check_resumable(self, study: optuna.Study) -> None:
        """A study resumed under its name must be the same study; its target carries over."""
        stored = study.user_attrs.get("autotune", {})
        for key in ("workload", "objective"):
            if stored.get(key) not in (None, getattr(self.spec, key)):
                raise UsageError(
                    f"study '{self.spec.name}' exists with {key} '{stored[key]}', not "
                    f"'{getattr(self.spec, key)}'; pick another --name or `autotune study delete {self.spec.name}`"
                )
        if self.state.target is None:
            self.state.set_target(study.user_attrs.get("target"))

    def _register(self, study: optuna.Study) -> None:
        """The study in the local store, running, with trials whose runner died recovered."""
        spec = self.spec
        self.store.put_study(
            spec.name, storage=self.context.storage_url, workload=spec.workload,
            space=str(spec.space), objective=spec.objective, n_trials=spec.n_trials,
            spec=spec.to_dict(), status=StudyStatus.RUNNING,
        )
        self.store.set_study_status(spec.name, StudyStatus.RUNNING, pid=os.getpid())
        for number, why in retries.recover_stale_trials(study):
            self.store.trial_finished(spec.name, number)
            self.events.emit("trial_retried", f"trial {number} failed: {why}; retrying it", number, number=number)

    def should_stop(self) -> bool:
        return self.stop_event.is_set() or self.store.study_status(self.spec.name) == StudyStatus.STOPPING

    # running ---------------------------------------------------------------------------------

    def _after_trial(self, study: optuna.Study, frozen: FrozenTrial) -> None:
        done = counted_trials(study)
        if frozen.user_attrs.get("autotune_status") != RunStatus.SURPLUS:  # it never ran: nothing to tell
            self._announce(frozen, done)
        self._check_storage()
        if self.state.fatal is not None or done >= self.spec.n_trials:
            study.stop()
            return
        status = self.store.study_status(self.spec.name)
        if status == StudyStatus.PAUSED:
            self.events.emit("study_paused", f"study paused after trial {frozen.number}")
            while status == StudyStatus.PAUSED and not self.stop_event.is_set():
                time.sleep(0.5)
                status = self.store.study_status(self.spec.name)
            if status == StudyStatus.RUNNING:
                self.events.emit("study_resumed", "study resumed")
        if status == StudyStatus.STOPPING or self.stop_event.is_set() or not self._free_slot(study):
            study.stop()

    def _check_storage(self) -> None:
        """A SQLite storage deleted or replaced under a running study would take every later
        trial with it into a file nobody can open: stop instead (state.fail)."""
        path = sqlite_path(self.context.storage_url)
        if path is not None and self.state.fatal is None and _file_id(path) != self._storage_file:
            self.state.fail(f"its storage {path} was deleted or replaced while it ran; the trials recorded since are "
                            "lost")

    def _free_slot(self, study: optuna.Study) -> bool:
        """Wait (without holding a trial) while other runners hold every remaining slot. False:
        stop, the study has its count or a stop was asked for."""
        return self.slots.wait_for_slot(study, self.should_stop)

    def _announce(self, frozen: FrozenTrial, done: int) -> None:
        """One event for a finished trial (complete, pruned or failed), then new_best if it is;
        `done` is the study's count once it finished."""
        number, reason = frozen.number, frozen.user_attrs.get("reason")
        best = self.state.best_value()
        data: dict[str, Any] = {
            "searched": [p.name for p in self.context.space.params],
            "number": number,
            "state": frozen.state.name,
            "value": frozen.value if not self.context.objective.multi and frozen.values else frozen.values,
            "reason": reason,
            "settings": frozen.user_attrs.get("settings", {}),
            "baseline": frozen.user_attrs.get("baseline", False),
            "duration": frozen.duration.total_seconds() if frozen.duration else None,
            "done": done,
            "total": self.spec.n_trials,
            "best": best,
            "new_best": frozen.state == TrialState.COMPLETE and best is not None and frozen.value == best,
        }
        if frozen.state == TrialState.COMPLETE:
            self.events.emit("trial_complete", f"trial {number} complete: {values_text(frozen.values)}", number, **data)
        elif frozen.state == TrialState.PRUNED:
            skipped = frozen.user_attrs.get("autotune_status") in (RunStatus.INFEASIBLE, RunStatus.UNSUPPORTED)
            message = f"trial {number} skipped: {reason}" if skipped else f"trial {number} {reason or 'pruned'}"
            self.events.emit("trial_pruned", message, number, **data)
        else:
            self.events.emit("trial_failed", f"trial {number} failed: {reason or 'failed'}", number, **data)
        if data["new_best"]:
            self.events.emit("new_best", f"new best: trial {number} = {best:.4g}", number, number=number, value=best)

    def run(self, confirm: bool = True) -> dict[str, Any]:
        """Optimize to the trial count, confirm, and return the report. Re-raises KeyboardInterrupt.

        Trials are started until the study (all its runners together) has its count: the stop
        is shared (`_after_trial`), not a per-runner n_trials. `confirm=False` skips the final
        confirmation (workers leave it to `study start`).
        """
        study = self.study or self.open()
        name = self.spec.name
        self.events.emit("study_started", f"study {name} running on {self.context.hardware.device_type}")
        started = time.time()
        try:
            remaining = self.spec.n_trials - counted_trials(study)
            if remaining > 0 and self.store.study_status(name) != StudyStatus.STOPPING and self._free_slot(study):
                study.optimize(
                    TrialObjective(self.context, self.state, self.launcher, self.events, self.slots,
                                   self.should_stop),
                    n_trials=None,
                    timeout=self.spec.timeout,
                    n_jobs=self.spec.workers,
                    catch=(TrialFailed,),
                    callbacks=[self._after_trial],
                    gc_after_trial=False,
                    show_progress_bar=False,
                )
        except KeyboardInterrupt:
            retries.requeue_ended(study, RunStatus.INTERRUPTED)
            self.store.set_study_status(name, StudyStatus.STOPPED)
            self.events.emit("study_stopped", "study interrupted; resume it with the same command")
            raise
        except Exception as exc:
            self.store.set_study_status(name, StudyStatus.FAILED, error=str(exc))
            self.events.emit("study_failed", f"study failed: {exc}")
            raise
        fatal = self.state.fatal
        if fatal is not None:
            self.store.set_study_status(name, StudyStatus.FAILED, error=fatal)
            self.events.emit("study_failed", f"study failed: {fatal}")
            raise RunError(f"study '{name}' stopped: {fatal}")
        stopped = self.store.study_status(name) == StudyStatus.STOPPING or self.stop_event.is_set()
        report = build_report(self.context, self.state, self.launcher, self.events, confirm=confirm and not stopped)
        report["elapsed"] = time.time() - started
        counts = report["counts"]
        summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        if stopped and counted_trials(study) < self.spec.n_trials:
            final, error = StudyStatus.STOPPED, None
        elif counts["complete"] == 0:
            final, error = StudyStatus.FAILED, f"no trial completed ({summary})"
        else:
            final, error = StudyStatus.FINISHED, None
        self.store.set_study_status(name, final, error=error)
        self.events.emit("study_finished", f"study {final}: {summary}", counts=counts)
        return report


def _file_id(path: Path | None) -> tuple[int, int] | None:
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st is not None else None


def install_signal_handlers() -> None:
    """SIGTERM behaves like Ctrl-C: the running trial is stopped and recorded, nothing is lost."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
