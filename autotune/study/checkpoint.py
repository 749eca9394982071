"""The trained model an inference study serves: a file written by `autotune trial run
--save-model` (`--checkpoint FILE`), or the best configuration of a finished training study
(`--from-study NAME`), trained once more with the model saved into the inference study's folder
(autotune.home.study_dir): a study's trials keep no weights, so the model is trained again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotune.errors import RunError, UsageError
from autotune.home import study_dir
from autotune.run.model_file import PickleRefused
from autotune.run.saving import current, describe, read_checkpoint, write_checkpoint
from autotune.spec import StudySpec
from autotune.tasks import task_of

if TYPE_CHECKING:
    from autotune.study.context import TrialContext
    from autotune.study.events import StudyEvents

MODEL_FILE = "model.pt"
TRUSTED_FILE = "checkpoint.pt"  # a trusted --checkpoint of the first format, in this format


def model_file(spec: StudySpec) -> Path:
    """Where `--from-study` trains the model to: the inference study's own folder."""
    return study_dir(spec.name) / MODEL_FILE


def check_source(spec: StudySpec) -> dict[str, Any]:
    """What the study will serve, checked before anything is written: the checkpoint's
    description, or the training study's best trial and spec. Fills `spec.workload` when it was
    not given; UsageError (one line) for a missing or foreign file, an unknown or unfinished
    study, or a workload other than the model's."""
    if spec.checkpoint is not None:
        info = describe(read_checkpoint(spec.checkpoint))
        _same_workload(spec, info["workload"], f"--checkpoint {spec.checkpoint} was trained on")
        spec.data_dir = spec.data_dir or info.get("data_dir")  # where its data was, unless told
        return {"kind": "checkpoint", **info}
    assert spec.from_study is not None
    source = training_study(spec.from_study, spec.storage)
    _same_workload(spec, source["workload"], f"study '{spec.from_study}' trained")
    spec.data_dir = spec.data_dir or source["spec"].get("data_dir")
    return source


def trust_checkpoint(spec: StudySpec) -> None:
    """`study start --trust-pickle`: a --checkpoint that needs pickle to read (autotune's first
    format) is read once, trusted, and written in the current format into the study's folder;
    the study serves that copy (`spec.checkpoint`), so its trial processes, workers and `study
    export` read it without pickle. A checkpoint that reads without pickle is left as it is."""
    if spec.checkpoint is None:
        return
    try:
        read_checkpoint(spec.checkpoint)
        return
    except PickleRefused:
        pass
    from autotune.registry import load_registry
    from autotune.workloads import load_workload

    payload = read_checkpoint(spec.checkpoint, trust_pickle=True)
    registry = load_registry(plugin_paths=spec.plugin_paths, disabled_knobs=spec.disabled_knobs)
    workload = load_workload(payload["workload"], registry, data_dir=spec.data_dir or payload.get("data_dir"),
                             workdir=spec.workdir)
    path = study_dir(spec.name) / TRUSTED_FILE
    try:
        write_checkpoint(current(payload, workload), path)
    except (OSError, ValueError, TypeError) as exc:
        raise RunError(f"--trust-pickle: cannot write --checkpoint {spec.checkpoint} anew to {path}: "
                       f"{type(exc).__name__}: {exc}") from None
    spec.checkpoint = str(path)


def _same_workload(spec: StudySpec, trained: str, where: str) -> None:
    if spec.workload is None:
        spec.workload = trained
    elif spec.workload != trained:
        raise UsageError(f"{where} workload '{trained}', not '{spec.workload}': give --workload {trained} "
                         "(or leave --workload out)")


def training_study(name: str, storage: str | None) -> dict[str, Any]:
    """A finished training study's best configuration and how it trained; UsageError when the
    study is unknown, still running or was stopped, serves models itself, or has no best trial."""
    from autotune.storage.local import Store
    from autotune.storage.rdb import default_storage_url
    from autotune.storage.reading import open_view, trial_rows
    from autotune.storage.results import best_row
    from autotune.statuses import StudyStatus

    store = Store()
    try:
        row = store.get_study(name)
    finally:
        store.close()
    url = storage or (row["storage"] if row else None) or default_storage_url()
    try:
        study = open_view(url, name)
    except UsageError:
        raise UsageError(f"--from-study {name}: no such study (see `autotune study list`)") from None
    attrs = study.user_attrs.get("autotune") or {}
    if task_of(attrs).serves_model:
        raise UsageError(f"--from-study {name}: an inference study; name the training study its model came from")
    status = row["status"] if row else None
    rows = trial_rows(study)
    if status not in (None, StudyStatus.FINISHED) or (status is None and not all(r.finished for r in rows)):
        raise UsageError(f"--from-study {name}: the study is {status or 'unfinished'}; its best configuration is "
                         f"not final until it finishes (`autotune study start --name {name} ...` resumes it)")
    best = best_row(study, rows)
    if best is None:
        raise UsageError(f"--from-study {name}: no trial completed, so there is no best configuration to train")
    return {
        "kind": "study", "study": name, "storage": url, "trial": best.number, "settings": dict(best.settings),
        "workload": attrs.get("workload"), "spec": attrs, "metric": study.user_attrs.get("metric"),
    }


def trained_model(context: "TrialContext", events: "StudyEvents", source: dict[str, Any]) -> str:
    """The checkpoint to serve: `--checkpoint`, or the training study's best configuration
    trained once (in a trial process, as its trials were) with its model saved into this
    study's folder; a model already there from an earlier start of this study is reused."""
    spec = context.spec
    if spec.checkpoint is not None:
        return spec.checkpoint
    path = model_file(spec)
    if path.is_file():
        return str(path)
    from autotune.launch.requests import TrainingRequest
    from autotune.launch.trial_process import launch
    from autotune.run.types import RunOptions

    trained = StudySpec.from_dict(source["spec"])
    metric = source.get("metric") or {}
    options = RunOptions(seed=trained.seed or 0, metric=metric.get("name", "accuracy"),
                         direction=metric.get("direction", "maximize"), save_model=str(path))
    request = TrainingRequest(
        workload=trained.workload, overrides=dict(source["settings"]), budget=dict(trained.budget), options=options,
        device=spec.device, plugin_paths=trained.plugin_paths, disabled_knobs=trained.disabled_knobs,
        data_dir=trained.data_dir, log_path=str(context.logs_dir / "train-model.log"), workdir=trained.workdir,
        stall_timeout=trained.stall_timeout or None,
    )
    context.logs_dir.mkdir(parents=True, exist_ok=True)
    events.emit("training_model", f"training the best configuration of study '{source['study']}' "
                f"(trial {source['trial']}) for {trained.budget_text}, to serve it")
    outcome = launch(request)
    if outcome.status != "ok" or not path.is_file():
        raise RunError(f"training study '{source['study']}''s best configuration to serve it failed: "
                       f"{outcome.error or outcome.status} (log: {request.log_path})")
    return str(path)
