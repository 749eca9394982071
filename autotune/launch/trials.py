"""What a trial process runs, by the type of its request: a workload trained
(autotune.run.engine), the user's script under a session (autotune.launch.script), or a trained
model served (autotune.inference.serve) or two servings timed together
(autotune.inference.compare). Each rebuilds the registry, hardware and workload by name and
resolves the settings here, against the hardware this process sees.

The heavy imports are made inside the functions: the forkserver preloads what every trial
needs (autotune.launch.trial_process.context), not what one kind of trial needs.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from autotune.launch.requests import InferenceRequest, ScriptRequest, TrainingRequest, TrialRequest


@functools.singledispatch
def run_trial(request: TrialRequest, reporter: Any) -> dict[str, Any]:
    """Run `request` in this trial process; the result as a dict (the pipe's "result")."""
    raise TypeError(f"no kind of trial runs a {type(request).__name__}")


def _hardware(request: TrialRequest) -> Any:
    from autotune.hardware import detect

    return detect((request.device or "").split(":")[0] or None)


@run_trial.register(TrainingRequest)
def _train(request: TrainingRequest, reporter: Any) -> dict[str, Any]:
    from autotune.budget import Budget
    from autotune.registry import load_registry
    from autotune.run import engine
    from autotune.settings import resolve_settings
    from autotune.workloads import load_workload

    registry = load_registry(plugin_paths=request.plugin_paths, disabled_knobs=request.disabled_knobs)
    hardware = _hardware(request)
    workload = load_workload(request.workload, registry, data_dir=request.data_dir, workdir=request.workdir)
    settings = resolve_settings(registry, hardware, workload, request.overrides)
    print(f"trial pid {os.getpid()}: {request.workload} {settings}", flush=True)
    result = engine.run(
        workload, settings, registry, hardware, Budget(**request.budget), device=request.device,
        options=request.options, on_eval=reporter.on_eval, on_progress=reporter.on_progress,
    )
    if result.traceback:
        print(result.traceback, flush=True)
    return result.to_dict()


@run_trial.register(ScriptRequest)
def _script(request: ScriptRequest, reporter: Any) -> dict[str, Any]:
    from autotune.launch.script import run_script
    from autotune.registry import load_registry
    from autotune.settings import resolve_settings
    from autotune.workloads import script_workload

    registry = load_registry(plugin_paths=request.plugin_paths, disabled_knobs=request.disabled_knobs)
    hardware = _hardware(request)
    # the script builds its own model and data: the workload stands for it only in resolution
    settings = resolve_settings(registry, hardware, script_workload(f"script:{request.script}"), request.overrides)
    print(f"trial pid {os.getpid()}: {request.script} {settings}", flush=True)
    outcome = run_script(request, settings, registry, hardware, reporter)
    if outcome.traceback:
        print(outcome.traceback, flush=True)
    return outcome.to_dict()


@run_trial.register(InferenceRequest)
def _serve(request: InferenceRequest, reporter: Any) -> dict[str, Any]:
    """Read the checkpoint, serve, measure (or, with `reference` settings, time both together).
    Nothing is reported while it runs: `reporter` is not used."""
    from autotune.inference.compare import compare
    from autotune.inference.serve import serve
    from autotune.registry import load_registry
    from autotune.run.saving import read_checkpoint
    from autotune.settings import resolve_settings
    from autotune.workloads import load_workload

    options = request.inference
    registry = load_registry(plugin_paths=request.plugin_paths, disabled_knobs=request.disabled_knobs,
                             task="inference")
    hardware = _hardware(request)
    workload = load_workload(request.workload, registry, data_dir=request.data_dir, workdir=request.workdir)
    payload = read_checkpoint(options.checkpoint)
    settings = resolve_settings(registry, hardware, workload, request.overrides)
    if options.reference is not None:
        reference = resolve_settings(registry, hardware, workload, options.reference)
        print(f"trial pid {os.getpid()}: timing {request.workload} {settings} against {reference}", flush=True)
        compared = compare(registry, hardware, workload, payload, reference, settings, options, device=request.device)
        if compared.get("traceback"):
            print(compared["traceback"], flush=True)
        return compared
    print(f"trial pid {os.getpid()}: serving {request.workload} {settings}", flush=True)
    result = serve(registry, hardware, workload, payload, settings, options, device=request.device)
    if result.traceback:
        print(result.traceback, flush=True)
    return result.to_dict()
