"""Validating a study before anything is written: the spec, plugins, hardware, workload, space
and storage, gathered into one `Prepared`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import optuna

from autotune.errors import UsageError
from autotune.hardware import Hardware, available_device_types, detect
from autotune.metrics import SCRIPT_METRIC, Metric
from autotune.objectives import Objective, get_objective
from autotune.registry import Registry, load_registry
from autotune.settings import baseline_settings
from autotune.space import load_space
from autotune.spec import StudySpec
from autotune.study.checkpoint import check_source
from autotune.study.enqueued import parse_enqueued
from autotune.storage.rdb import default_storage_url, open_storage, sqlalchemy_url
from autotune.tasks import Task, get_task
from autotune.workloads import Workload, load_workload, script_workload

if TYPE_CHECKING:
    from autotune.devices import DevicePool


def make_pruner(name: str, evals_per_epoch: int, epochs: int) -> optuna.pruners.BasePruner:
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
    metric: Metric = Metric()  # what the study judges by (autotune.spec.StudySpec.study_metric)
    # an inference study's model: the checkpoint's description or the training study's best
    # (autotune.study.checkpoint.check_source); None for a training study
    source: dict[str, Any] | None = None
    # the params of the trials `--enqueue` asks for (autotune.study.enqueued), run after the baseline
    enqueued: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def task(self) -> Task:
        return get_task(self.spec.task)


def prepare(spec: StudySpec, check_hardware: Callable[[Hardware], None] | None = None) -> Prepared:
    """Validate a spec completely. Raises UsageError; writes nothing.

    `check_hardware(hardware)` lets a caller validate its own options against the machine
    (GPUs per trial) before the storage is opened, which creates an SQLite file.
    """
    spec.validate()
    registry = load_registry(plugin_paths=spec.plugin_paths, disabled_knobs=spec.disabled_knobs, task=spec.task)
    device_type = (spec.device or "").split(":")[0] or None
    if device_type:
        if device_type not in available_device_types():
            raise UsageError(f"--device {spec.device}: not available here")
    hardware = detect(device_type)
    if check_hardware is not None:
        check_hardware(hardware)
    source = None
    task = get_task(spec.task)
    if spec.script is not None:
        # the script builds its own model and data, in its trials; it is judged by val_loss
        # unless --metric names what its session.report() gives
        workload = script_workload(spec.workload)
        metric = spec.study_metric(Metric.named(SCRIPT_METRIC))
    else:
        source = check_source(spec) if task.serves_model else None
        workload = load_workload(spec.workload, registry, data_dir=spec.data_dir, workdir=spec.workdir)
        metric = spec.study_metric(workload.primary_metric)
    objective = get_objective(spec.objective, metric)
    space_name = spec.space or task.default_space(hardware.device_type)
    space = load_space(space_name, registry, hardware, workload.traits())
    if spec.keep_recipe:
        space = recipe_kept(space, registry, hardware, workload, space_name)
    spec.space = space_name
    storage_url = sqlalchemy_url(spec.storage or default_storage_url())
    if not spec.keep_recipe and stages_apply(spec, task, objective):
        space = space.staged(registry)
    enqueued = parse_enqueued(spec, registry, hardware, workload, space) if spec.enqueue else []
    return Prepared(
        spec=spec, objective=objective, registry=registry, hardware=hardware, workload=workload,
        space=space, storage_url=storage_url, storage=open_storage(storage_url), metric=metric,
        source=source, enqueued=enqueued,
    )


def recipe_kept(space: Any, registry: Registry, hardware: Hardware, workload: Workload, name: str) -> Any:
    """--keep-recipe: `space` with its systems knobs only, the recipe the baseline's; UsageError
    when it searches none."""
    kept = space.keeping_recipe(registry, baseline_settings(registry, hardware, workload))
    if not kept.params:
        raise UsageError(f"--keep-recipe: space '{name}' searches no systems knob (workers, threads, precision "
                         f"...), so there is nothing to tune without changing the recipe")
    return kept


def stages_apply(spec: StudySpec, task: Task, objective: Objective) -> bool:
    """Whether the search takes the statistical knobs and a second stage fits the systems ones
    (autotune.study.systems): for time to a target, where a systems knob's gain is the step time
    alone and hides in the noise of convergence, on a workload's training (a --script's trials
    run the user's own loop, whose steps the stage cannot time apart)."""
    return spec.staged and not task.serves_model and objective.stop_at_target and spec.script is None


def fit_to_devices(prepared: Prepared, devices: "DevicePool") -> None:
    """A trial sees only the GPUs it leases, renumbered from 0: describe and search what one
    trial can use (data_parallel needs 2+ GPUs in the trial, not on the machine)."""
    hardware = prepared.hardware
    if not hardware.is_cuda or not devices.per_trial or hardware.device_count == devices.per_trial:
        return
    prepared.hardware = dataclasses.replace(hardware, device_count=devices.per_trial)
    prepared.space = load_space(
        str(prepared.spec.space), prepared.registry, prepared.hardware, prepared.workload.traits()
    )
    if prepared.spec.keep_recipe:
        prepared.space = recipe_kept(prepared.space, prepared.registry, prepared.hardware, prepared.workload,
                                     str(prepared.spec.space))
    elif stages_apply(prepared.spec, prepared.task, prepared.objective):
        prepared.space = prepared.space.staged(prepared.registry)
