"""Starting a study's trial processes: what each is asked (`request`), the threads and devices
it gets, and the launch itself, watched through the local store (its pid, a kill asked for)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable

from autotune.inference.types import InferenceOptions
from autotune.launch.requests import InferenceRequest, ScriptRequest, TrainingRequest, TrialRequest
from autotune.launch.trial_process import TrialOutcome, launch
from autotune.run.types import RunOptions

if TYPE_CHECKING:
    from autotune.devices import DevicePool
    from autotune.storage.local import Store
    from autotune.study.context import StudyState, TrialContext


class TrialLauncher:
    """Builds and starts the trial processes of one runner. `devices` hands each trial its own
    GPUs (CUDA_VISIBLE_DEVICES) or a concurrency slot; without it trials run one at a time per
    Optuna worker thread."""

    def __init__(self, context: "TrialContext", state: "StudyState", store: "Store",
                 devices: "DevicePool | None" = None) -> None:
        self.context = context
        self.state = state
        self.store = store
        self.devices = devices

    @property
    def parallel(self) -> int:
        """How many trials run side by side."""
        workers = self.context.spec.workers
        return max(workers, self.devices.capacity if self.devices is not None else 1)

    def fit_threads(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """A searched trial's settings with threads that fit it, where the search does not set
        them: its share of the cores (trials running side by side split them) less its
        DataLoader workers, so that no speedup comes from oversubscription the study made. The
        baseline keeps its recipe (torch's default: every core)."""
        hardware, registry = self.context.hardware, self.context.registry
        if hardware.device_type != "cpu" or "threads" not in registry.knobs or "threads" in overrides:
            return overrides
        share = self._share() or hardware.cpu_count  # one trial at a time: every core
        workers = int(overrides.get("workers", self.context.baseline.get("workers", 0)) or 0)
        return {**overrides, "threads": max(1, share - workers)}

    def cap_threads(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """`overrides` with the threads setting no more than a trial's share of the cores when
        trials run side by side on CPU (the value the trial process then runs)."""
        share = self._share()
        if share is None or "threads" not in self.context.registry.knobs:
            return overrides
        return {**overrides, "threads": min(int(overrides.get("threads", share)), share)}

    def _share(self) -> int | None:
        """A trial's share of the cores when trials run side by side on CPU, instead of each
        taking them all; None otherwise (torch's default)."""
        hardware = self.context.hardware
        if self.parallel > 1 and hardware.device_type == "cpu":
            return max(1, hardware.cpu_count // self.parallel)
        return None

    # what a trial process is asked ---------------------------------------------------------------

    def request(self, overrides: dict[str, Any], is_baseline: bool, log_path: str) -> TrialRequest:
        """One trial process's request: an InferenceRequest when the task serves a model, a
        ScriptRequest in a --script study, else a TrainingRequest."""
        spec = self.context.spec
        threads = self._share()
        overrides = self.cap_threads(overrides)
        common: dict[str, Any] = dict(
            overrides=overrides, device=spec.device, threads=threads, log_path=log_path,
            workdir=spec.workdir, stall_timeout=spec.stall_timeout or None,
            plugin_paths=spec.plugin_paths, disabled_knobs=spec.disabled_knobs,
        )
        if self.context.task.serves_model:
            return InferenceRequest(workload=spec.workload, data_dir=spec.data_dir,
                                    inference=self._serving(is_baseline), **common)
        options = self._options(is_baseline)
        if spec.script is not None:
            return ScriptRequest(script=spec.script, script_args=tuple(spec.script_args),
                                 budget=dict(spec.budget), options=options, **common)
        return TrainingRequest(workload=spec.workload, budget=dict(spec.budget), options=options,
                               data_dir=spec.data_dir, **common)

    def _serving(self, is_baseline: bool) -> InferenceOptions:
        spec, metric = self.context.spec, self.context.metric
        assert spec.checkpoint is not None
        return InferenceOptions(
            checkpoint=spec.checkpoint, iterations=spec.iterations, seed=spec.seed or 0,
            metric=metric.name, direction=metric.direction,
            paired=None if is_baseline else dict(self.context.baseline),
        )

    def _options(self, is_baseline: bool) -> RunOptions:
        spec, objective, metric = self.context.spec, self.context.objective, self.context.metric
        target = self.state.target
        return RunOptions(
            seed=spec.seed or 0,
            target=None if is_baseline and target is None else target,
            stop_at_target=objective.stop_at_target and not is_baseline,
            evals_per_epoch=objective.evals_per_epoch, evals_per_budget=objective.evals_per_budget,
            metric=metric.name, direction=metric.direction, run_scale=spec.run_scale,
        )

    # starting it ---------------------------------------------------------------------------------

    def lease(self) -> Any:
        """A device lease for one training process: its GPUs on CUDA, a concurrency slot on CPU."""
        return self.devices.lease() if self.devices is not None else nullcontext({})

    def use_gpus(self, request: TrialRequest, gpus: dict[str, str]) -> None:
        """Point a trial at the GPUs it leased: inside the trial they are renumbered from 0."""
        if gpus and self.context.hardware.is_cuda:
            request.env.update(gpus)
            request.device = "cuda"

    def run(self, request: TrialRequest, number: int | None = None,
            on_eval: Callable[[dict[str, Any]], bool] | None = None,
            on_progress: Callable[[dict[str, Any]], None] | None = None) -> TrialOutcome:
        """Run `request` in a trial process on leased devices. A searched trial (`number`) can be
        killed from the store (`autotune trial kill`, the UI) and records its pid there."""
        name = self.context.spec.name
        watched: dict[str, Any] = {}
        if number is not None:
            watched = dict(
                should_kill=lambda: self.store.kill_requested(name, number),
                on_start=lambda pid: self.store.trial_progress(name, number, pid=pid),
            )
        with self.lease() as gpus:
            self.use_gpus(request, gpus)
            return launch(request, on_eval=on_eval, on_progress=on_progress, **watched)
