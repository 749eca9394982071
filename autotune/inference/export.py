"""The served model of an inference study's best trial, written to a file a user loads with one
call: `autotune.load_served(PATH)` (`autotune study export NAME --model PATH`).

The model is rebuilt as the trial built it (autotune.inference.serve: the study's checkpoint,
every inference knob's `apply`, the transforms in order), then written in one of two formats:

- a `torch.export` program (`torch.export.save`) when the served model exports with a free batch
  dimension and the program gives the served model's outputs; `torch.export.load(PATH).module()`
  also loads it, without autotune. Input casts (serving precision, channels_last) and the fp32
  outputs are part of the program.
- otherwise (a compiled model, which export would run uncompiled; a module export refuses) a
  `torch.save` of the recipe: the checkpoint (weights, workload) and the trial's settings, which
  `load_served` re-applies through the same knobs. Loading it runs pickle and imports the
  workload: load only files you trust.

Either way the study's trial settings ride along, and loading sets torch's intra-op threads to
the trial's `serve_threads`, as the trial was measured.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autotune.errors import UsageError
from autotune.inference.serve import Served, build_plan, built
from autotune.batches import map_tensors
from autotune.run.measure import seed_everything
from autotune.run.saving import model_from, read_checkpoint

if TYPE_CHECKING:
    from autotune.inference.plan import InferencePlan

FORMAT = "autotune-served/1"
EXPORTED, RECIPE = "exported_program", "recipe"
SETTINGS_FILE = "autotune_settings.json"  # inside an exported program's archive (extra_files)


class ServedModel(Served):
    """The served model called as the data gives its inputs: the plan's input transforms
    (precision cast, channels_last) applied first, floating outputs back in fp32."""

    def __init__(self, model: Any, input_transforms: list[Any]) -> None:
        super().__init__(model)
        self.input_transforms = list(input_transforms)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        for fn in self.input_transforms:
            args, kwargs = map_tensors(args, fn), map_tensors(kwargs, fn)
        return super().forward(*args, **kwargs)


class _OneInput(torch.nn.Module):
    """`model` with a single positional tensor input, the form torch.export gets a free batch
    dimension for (`dynamic_shapes`)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)


def rebuild(spec: dict[str, Any], settings: dict[str, Any], checkpoint: dict[str, Any] | None = None,
            device: str | None = None) -> tuple[ServedModel, "InferencePlan"]:
    """The served model of a trial of the inference study `spec` (its stored spec) under
    `settings`, built as the trial process built it (autotune.launch.trials)."""
    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.workloads import load_workload

    payload = checkpoint if checkpoint is not None else read_checkpoint(spec["checkpoint"])
    registry = load_registry(plugin_paths=spec.get("plugin_paths") or (),
                             disabled_knobs=spec.get("disabled_knobs") or (), task="inference")
    dev = device or spec.get("device") or None
    hardware = detect((dev or "").split(":")[0] or None)
    workload = load_workload(spec.get("workload") or payload["workload"], registry,
                             data_dir=spec.get("data_dir") or payload.get("data_dir"), workdir=spec.get("workdir"))
    seed = int(spec.get("seed") or 0)
    seed_everything(seed)
    plan = build_plan(registry, hardware, workload, settings, model_from(payload, workload),
                      torch.device(dev or hardware.device_type), seed=seed)
    model, _ = built(plan)
    return ServedModel(model, plan.input_transforms).eval(), plan


def try_export(served: ServedModel, plan: "InferencePlan") -> tuple[Any, str | None]:
    """A torch.export program of `served` with a free batch dimension, or None and why not."""
    if plan.compiled:
        return None, "the served model is compiled (torch.export would run it uncompiled)"
    args, kwargs = plan.example
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None, "the model is not called with one tensor"
    example = args[0]
    try:
        with torch.no_grad():
            program = torch.export.export(_OneInput(served), (example,),
                                          dynamic_shapes=({0: torch.export.Dim.AUTO},))
            want, got = served(example), program.module()(example)
    except Exception as exc:
        return None, f"torch.export refused it: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if not _same(want, got):
        return None, "the exported program's outputs differ from the served model's"
    return program, None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def write_served(spec: dict[str, Any], settings: dict[str, Any], out: str | os.PathLike[str]) -> dict[str, Any]:
    """Rebuild the served model of `settings` and write it to `out`; returns what was written:
    `format` (EXPORTED or RECIPE) and, for a recipe, `why` it is not an exported program."""
    payload = read_checkpoint(spec["checkpoint"])
    served, plan = rebuild(spec, settings, payload)
    try:
        program, why = try_export(served, plan)
    finally:
        for cleanup in plan.cleanups:
            cleanup()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if program is not None:  # through a file object: torch.export wants a name ending in .pt2
            with open(tmp, "wb") as f:
                torch.export.save(program, f, extra_files={SETTINGS_FILE: json.dumps(settings)})
        else:
            recipe = {"format": FORMAT, "spec": {k: spec.get(k) for k in
                                                 ("workload", "data_dir", "workdir", "plugin_paths",
                                                  "disabled_knobs", "seed", "device")},
                      "settings": dict(settings), "checkpoint": payload}
            torch.save(recipe, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--model {out}: cannot write it: {exc}") from None
    return {"format": EXPORTED if program is not None else RECIPE, "why": why}


def load_served(path: str | os.PathLike[str], device: str | None = None) -> torch.nn.Module:
    """The served model `autotune study export NAME --model PATH` wrote, in eval mode, called as
    the workload's data gives its inputs; torch's intra-op threads set to the trial's."""
    target = Path(path)
    if not target.is_file():
        raise UsageError(f"{path}: no such file")
    if _is_torch_save(target):
        recipe = torch.load(target, map_location="cpu", weights_only=False)
        if not isinstance(recipe, dict) or recipe.get("format") != FORMAT:
            raise UsageError(f"{path}: not a served model written by `autotune study export --model`")
        model, _ = rebuild({**recipe["spec"], "device": device or recipe["spec"].get("device")},
                           recipe["settings"], recipe["checkpoint"])
        return model
    extra = {SETTINGS_FILE: ""}
    try:
        with open(target, "rb") as f:
            program = torch.export.load(f, extra_files=extra)
    except Exception as exc:
        raise UsageError(f"{path}: cannot load it: {type(exc).__name__}: {exc}") from None
    threads = (json.loads(extra[SETTINGS_FILE] or "{}")).get("serve_threads")
    if threads:
        torch.set_num_threads(int(threads))
    return Served(program.module()).eval()


def _is_torch_save(path: Path) -> bool:
    """A `torch.save` archive (its pickle at `<root>/data.pkl`), not a torch.export package."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.count("/") == 1 and name.endswith("/data.pkl") for name in archive.namelist())
    except zipfile.BadZipFile:
        raise UsageError(f"{path}: not a served model written by `autotune study export --model`") from None
