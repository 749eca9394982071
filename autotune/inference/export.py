"""The served model of an inference study's best trial, written to a file a user loads with one
call: `autotune.load_served(PATH)` (`autotune study export NAME --model PATH`).

The model is rebuilt as the trial built it (autotune.inference.serve: the study's checkpoint,
every inference knob's `apply`, the transforms in order), then written in one of two formats:

- a `torch.export` program (`torch.export.save`) when the served model exports with a free batch
  dimension and the program gives the served model's outputs; `torch.export.load(PATH).module()`
  also loads it, without autotune. Input casts (serving precision, channels_last) and the fp32
  outputs are part of the program.
- otherwise (a compiled model, which export would run uncompiled; a module export refuses; a
  program torch.export would pickle part of) a recipe (autotune.run.model_file: JSON and tensors):
  the checkpoint's weights and description, the study's workload and plugins, and the trial's
  settings, which `load_served` re-applies through the same knobs. Rebuilding imports the
  workload and plugin files the recipe names: that code must be on the loading machine.

Either way the study's trial settings ride along, and loading sets torch's intra-op threads to
the trial's `serve_threads`, as the trial was measured.

Nothing is unpickled unless trusted (`trust_pickle=True`, `study export --trust-pickle`). A
recipe reads with `weights_only=True`. `torch.export.load` itself unpickles some members of its
archive, and a program's sample inputs that `weights_only=True` refuses it loads again without
(running whatever they hold), so a program is checked first (autotune.inference.program_file) and
refused when any member would be unpickled; its graph is JSON that torch's verifier keeps to
operators.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autotune.batches import map_tensors
from autotune.errors import UsageError
from autotune.inference.program_file import pickled_members
from autotune.inference.serve import Served, build_plan, built
from autotune.run.measure import seed_everything
from autotune.run.model_file import WEIGHTS, is_torch_save, read_model_file, refused, write_model_file
from autotune.run.saving import FIRST_FORMAT as FIRST_CHECKPOINT
from autotune.run.saving import FORMAT as CHECKPOINT
from autotune.run.saving import current, model_from, read_checkpoint

if TYPE_CHECKING:
    from autotune.inference.plan import InferencePlan

FORMAT = "autotune-served/2"
FIRST_FORMAT = "autotune-served/1"  # torch.save of the recipe, its checkpoint's tensors inside
EXPORTED, RECIPE = "exported_program", "recipe"
NOT_OURS = "a served model written by `autotune study export --model`"
SPEC_KEYS = ("workload", "data_dir", "workdir", "plugin_paths", "disabled_knobs", "seed", "device")
TRUST_ARGUMENT = "trust_pickle=True"
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


def write_served(spec: dict[str, Any], settings: dict[str, Any], out: str | os.PathLike[str],
                 trust_pickle: bool = False) -> dict[str, Any]:
    """Rebuild the served model of `settings` and write it to `out`; returns what was written:
    `format` (EXPORTED or RECIPE) and, for a recipe, `why` it is not an exported program.
    `trust_pickle`: the study's checkpoint may be read with pickle (the first format)."""
    payload = read_checkpoint(spec["checkpoint"], trust_pickle=trust_pickle)
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
            pickled = pickled_members(tmp)
            if pickled:
                program, why = None, f"torch.export would pickle part of the program ({pickled[0]})"
        if program is None:
            checkpoint = current(payload, plan.workload)
            recipe = {"format": FORMAT, "spec": {k: spec.get(k) for k in SPEC_KEYS}, "settings": dict(settings),
                      "checkpoint": {k: v for k, v in checkpoint.items() if k != WEIGHTS}}
            write_model_file(tmp, recipe, checkpoint[WEIGHTS])
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"--model {out}: cannot write it: {exc}") from None
    return {"format": EXPORTED if program is not None else RECIPE, "why": why}


def load_served(path: str | os.PathLike[str], device: str | None = None,
                trust_pickle: bool = False) -> torch.nn.Module:
    """The served model `autotune study export NAME --model PATH` wrote, in eval mode, called as
    the workload's data gives its inputs; torch's intra-op threads set to the trial's.

    Nothing in the file is unpickled: a file that would need it (autotune's first recipe
    format, a torch.export program with pickled members) raises PickleRefused, unless
    `trust_pickle=True` says you trust where it came from."""
    target = Path(path)
    if not target.is_file():
        raise UsageError(f"{path}: no such file")
    if not zipfile.is_zipfile(target):  # both formats are zip archives
        raise UsageError(f"{path}: not {NOT_OURS}")
    if is_torch_save(target):
        return _load_recipe(target, str(path), device, trust_pickle)
    extra = {SETTINGS_FILE: ""}
    try:
        with open(target, "rb") as f:  # one open file: what is checked is what loads
            pickled = [] if trust_pickle else pickled_members(f)
            if pickled:
                raise refused(str(path), TRUST_ARGUMENT,
                              holds=f"members torch.export.load would unpickle ({', '.join(pickled[:3])})")
            f.seek(0)
            program = torch.export.load(f, extra_files=extra)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path}: cannot load it: {type(exc).__name__}: {exc}") from None
    threads = (json.loads(extra[SETTINGS_FILE] or "{}")).get("serve_threads")
    if threads:
        torch.set_num_threads(int(threads))
    return Served(program.module()).eval()


def _load_recipe(target: Path, label: str, device: str | None, trust_pickle: bool) -> torch.nn.Module:
    """A recipe's served model, rebuilt through its workload and knobs."""
    recipe = read_model_file(target, label, NOT_OURS, trust_pickle=trust_pickle, trust=TRUST_ARGUMENT)
    checkpoint, settings, spec = recipe.get("checkpoint"), recipe.get("settings"), recipe.get("spec")
    if not all(isinstance(part, dict) for part in (checkpoint, settings, spec)) or recipe.get("format") not in (
            FORMAT, FIRST_FORMAT) or checkpoint.get("format") not in (FIRST_CHECKPOINT, CHECKPOINT):
        raise UsageError(f"{label}: not {NOT_OURS}")
    if recipe["format"] == FORMAT:  # the checkpoint's description in the JSON, its tensors beside it
        checkpoint = {**checkpoint, WEIGHTS: recipe[WEIGHTS]}
    spec = dict(spec)
    workdir = spec.get("workdir")
    if workdir is not None and not os.path.isdir(workdir):
        # import paths resolve in a folder; a file there would be zip-imported (the recipe's own archive)
        spec["workdir"] = None
    model, _ = rebuild({**spec, "device": device or spec.get("device")}, settings, checkpoint)
    return model
