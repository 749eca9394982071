"""`autotune worker`: run trials of an existing study from this machine, sharing it with the
runners elsewhere through its storage (the counting rules are autotune.study.slots)."""

from __future__ import annotations

import os
import time
import zlib

import optuna

from autotune.errors import UsageError
from autotune.spec import StudySpec
from autotune.storage.local import Store
from autotune.storage.rdb import display_url, open_storage, sqlite_path
from autotune.study.events import Listener
from autotune.study.retries import RUNNER_ID


def load_spec(storage_url: str, name: str, wait: float = 10.0) -> StudySpec:
    """The StudySpec stored with study `name`. UsageError (exit 2) when there is no such study."""
    path = sqlite_path(storage_url)
    if path is not None and not path.is_file():  # Optuna would create an empty database
        raise UsageError(f"no study '{name}' in {storage_url} (no such file)")
    storage = open_storage(storage_url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise UsageError(
            f"no study '{name}' in {display_url(storage_url)}: create it first with "
            f"`autotune study start --name {name} --storage URL ...`"
        ) from None
    # The creator writes the spec right after creating the study: give it a moment.
    deadline = time.monotonic() + wait
    data = study.user_attrs.get("autotune")
    while not data and time.monotonic() < deadline:
        time.sleep(0.5)
        data = study.user_attrs.get("autotune")
    if not data:
        raise UsageError(
            f"study '{name}' in {display_url(storage_url)} was not created by autotune "
            f"(no 'autotune' study attribute)"
        )
    return StudySpec.from_dict(data)


def run_worker(
    storage_url: str,
    name: str,
    *,
    workers: int | None = None,
    gpus_per_trial: int | None = None,
    device: str | None = None,
    data_dir: str | None = None,
    plugin_paths: tuple[str, ...] = (),
    listeners: tuple[Listener, ...] = (),
) -> dict[str, object]:
    """Run trials of the existing study `name` until it has its count. Returns the report.

    Only loads the study (never creates it, never enqueues the baseline) and never runs the
    final confirmation: both belong to `autotune study start`.
    """
    from autotune.devices import trial_pool_for
    from autotune.study.prepare import prepare
    from autotune.study.runner import StudyRunner

    spec = load_spec(storage_url, name)
    spec.storage = storage_url
    spec.device = device  # the creator's device choice says nothing about this machine
    spec.workdir = os.getcwd()  # nor does its folder: import paths resolve here
    if data_dir is not None:
        spec.data_dir = data_dir
    if plugin_paths:
        spec.plugin_paths = tuple(plugin_paths)
    spec.workers = workers or 1
    prepared = prepare(spec)

    pool, spec.workers = trial_pool_for(prepared.hardware, workers, gpus_per_trial)
    if pool is not None:
        spec.device = "cuda"

    store = Store()
    runner = StudyRunner(prepared, store, listeners=listeners, devices=pool)
    if spec.seed is not None:
        runner.sampler_seed = (spec.seed + zlib.crc32(RUNNER_ID.encode())) % 2**32
    runner.open(create=False)
    return runner.run(confirm=False)
