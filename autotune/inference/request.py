"""An inference trial's request served in its trial process (autotune.run.trial_process): one
configuration served and measured (autotune.inference.serve), or, for a confirmation pair, two
timed together (autotune.inference.compare)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autotune.inference.compare import compare
from autotune.inference.serve import serve

if TYPE_CHECKING:
    from autotune.run.trial_process import TrialRequest


def serve_request(request: "TrialRequest") -> dict[str, Any]:
    """An inference trial in its trial process (autotune.run.trial_process): rebuild the
    registry, hardware and workload by name, read the checkpoint, serve, measure (or, with
    `reference` settings, time both together)."""
    import os

    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.run.saving import read_checkpoint
    from autotune.settings import resolve_settings
    from autotune.workloads import load_workload

    assert request.inference is not None
    registry = load_registry(plugin_paths=request.plugin_paths, disabled_knobs=request.disabled_knobs,
                             task="inference")
    hardware = detect((request.device or "").split(":")[0] or None)
    workload = load_workload(request.workload, registry, data_dir=request.data_dir, workdir=request.workdir)
    payload = read_checkpoint(request.inference.checkpoint)
    settings = resolve_settings(registry, hardware, workload, request.overrides)
    if request.inference.reference is not None:
        reference = resolve_settings(registry, hardware, workload, request.inference.reference)
        print(f"trial pid {os.getpid()}: timing {request.workload} {settings} against {reference}", flush=True)
        compared = compare(registry, hardware, workload, payload, reference, settings, request.inference,
                           device=request.device)
        if compared.get("traceback"):
            print(compared["traceback"], flush=True)
        return compared
    print(f"trial pid {os.getpid()}: serving {request.workload} {settings}", flush=True)
    result = serve(registry, hardware, workload, payload, settings, request.inference, device=request.device)
    if result.traceback:
        print(result.traceback, flush=True)
    return result.to_dict()
