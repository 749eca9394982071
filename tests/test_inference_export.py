"""The served model's file (autotune.inference.export, autotune.inference.program_file): a
torch.export program or a recipe of JSON and tensors, loaded by `autotune.load_served` without
unpickling anything; a file that would need pickle (the first recipe format, a program with
pickled members) refused with one line naming `trust_pickle=True`, and loaded with it.

The checkpoint is a fresh (untrained) digits model: what is tested is the file, not the model.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

import autotune
from autotune.errors import UsageError
from autotune.hardware import detect
from autotune.inference.export import EXPORTED, RECIPE, rebuild, write_served
from autotune.inference.program_file import pickled_members
from autotune.registry import load_registry
from autotune.run.model_file import PickleRefused
from autotune.run.saving import FIRST_FORMAT, MODULE, read_checkpoint, save_model
from autotune.settings import resolve_settings
from autotune.workloads import Workload

UNPICKLED: list[str] = []  # what `_mark` was called with: a pickle that ran


def _mark(text: str) -> dict[str, Any]:
    UNPICKLED.append(text)
    return {}


class RunsCode:
    """An object whose unpickling runs code (here, only `_mark`) and gives an empty dict."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_mark, ("unpickled",))


@pytest.fixture
def checkpoint(tmp_path: Path, digits_workload: Workload) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "digits.pt"
    save_model(digits_workload.model_fn(), path, digits_workload, {}, {"name": "accuracy", "direction": "maximize"},
               {})
    return path


def settings(workload: Workload, **overrides: Any) -> dict[str, Any]:
    registry = load_registry(entry_points=False, task="inference")
    return resolve_settings(registry, detect("cpu"), workload, {"serve_threads": 1, "serve_batch_size": 8,
                                                               **overrides})


def outputs(model: torch.nn.Module, workload: Workload) -> torch.Tensor:
    x = torch.stack([workload.val_data[i][0] for i in range(4)])
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("overrides, kind", [({}, EXPORTED), ({"int8_dynamic": True}, RECIPE)])
def test_the_served_model_round_trips_in_either_format_without_pickle(
    tmp_path: Path, checkpoint: Path, digits_workload: Workload, overrides: dict[str, Any], kind: str
) -> None:
    spec = {"checkpoint": str(checkpoint), "workload": "digits"}
    chosen = settings(digits_workload, **overrides)
    out = tmp_path / "served.pt2"
    assert write_served(spec, chosen, out)["format"] == kind  # quantized Linear layers do not export
    if kind == EXPORTED:
        assert pickled_members(out) == []
    else:  # the recipe: plain torch reads it without pickle
        assert set(torch.load(out, weights_only=True)) == {"autotune", "state_dict"}
    want, _ = rebuild(spec, chosen)
    assert torch.allclose(outputs(autotune.load_served(out), digits_workload), outputs(want, digits_workload))


def test_a_recipe_of_the_first_format_is_refused_and_loads_with_trust_pickle(
    tmp_path: Path, checkpoint: Path, digits_workload: Workload
) -> None:
    payload = read_checkpoint(checkpoint)
    model = digits_workload.model_fn()
    model.load_state_dict(payload["state_dict"])
    old = tmp_path / "old.pt"
    chosen = settings(digits_workload)
    torch.save({"format": "autotune-served/1", "spec": {"workload": "digits"}, "settings": chosen,
                "checkpoint": {**payload, "format": FIRST_FORMAT, "structure": MODULE, MODULE: model}}, old)
    with pytest.raises(PickleRefused) as refused:
        autotune.load_served(old)
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"{old}: refused: it holds pickled Python objects")
    assert line.endswith("pass trust_pickle=True")
    want, _ = rebuild({"checkpoint": str(checkpoint), "workload": "digits"}, chosen)
    loaded = autotune.load_served(old, trust_pickle=True)
    assert torch.allclose(outputs(loaded, digits_workload), outputs(want, digits_workload))


def test_a_study_checkpoint_of_the_first_format_exports_only_with_trust_pickle(
    tmp_path: Path, checkpoint: Path, digits_workload: Workload
) -> None:
    """`study export --model --trust-pickle`: the served model written from a trusted old
    checkpoint is a file of this format, loaded without trust."""
    payload = read_checkpoint(checkpoint)
    model = digits_workload.model_fn()
    model.load_state_dict(payload["state_dict"])
    old = tmp_path / "old-checkpoint.pt"
    torch.save({**payload, "format": FIRST_FORMAT, "structure": MODULE, MODULE: model}, old)
    spec = {"checkpoint": str(old), "workload": "digits"}
    chosen = settings(digits_workload, int8_dynamic=True)
    out = tmp_path / "served.pt"
    with pytest.raises(PickleRefused, match="pass --trust-pickle$"):
        write_served(spec, chosen, out)
    assert write_served(spec, chosen, out, trust_pickle=True)["format"] == RECIPE
    assert isinstance(autotune.load_served(out), torch.nn.Module)


def test_a_program_whose_sample_inputs_run_code_is_refused_before_torch_export_loads_it(
    tmp_path: Path, checkpoint: Path, digits_workload: Workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.export.load reads a program's sample inputs with weights_only=True and, when that
    fails, again without (torch 2.14): a crafted file would run its code there. load_served
    checks the archive first."""
    program = tmp_path / "served.pt2"
    assert write_served({"checkpoint": str(checkpoint), "workload": "digits"}, settings(digits_workload),
                        program)["format"] == EXPORTED
    crafted = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(program) as src, zipfile.ZipFile(crafted, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data/sample_inputs/model.pt"):
                args, kwargs = torch.load(io.BytesIO(data), weights_only=True)
                buffer = io.BytesIO()
                assert kwargs == {}
                torch.save((args, RunsCode()), buffer)  # the keyword arguments, unpickled by running code
                data = buffer.getvalue()
            dst.writestr(info, data)
    assert pickled_members(crafted) == ["data/sample_inputs/model.pt"]
    UNPICKLED.clear()
    with pytest.raises(PickleRefused, match=r"crafted\.pt2: refused: it holds members torch\.export\.load would "
                                            r"unpickle \(data/sample_inputs/model\.pt\), .* pass trust_pickle=True$"):
        autotune.load_served(crafted)
    assert UNPICKLED == []
    # trusted, torch.export.load reads it as torch does, code and all (and logs its fallback with a
    # malformed message, which pytest's log capture would turn into an error)
    monkeypatch.setattr(logging, "raiseExceptions", False)
    assert isinstance(autotune.load_served(crafted, trust_pickle=True), torch.nn.Module)
    assert UNPICKLED == ["unpickled"]


def test_a_recipe_cannot_import_code_from_its_own_archive(
    tmp_path: Path, checkpoint: Path, digits_workload: Workload
) -> None:
    """A recipe names its workload as an import path and the folder it resolves in; Python
    imports from a zip archive on sys.path, and a recipe is one: a folder that is no folder (the
    recipe's own archive) is not put there."""
    out = tmp_path / "served.pt"
    spec = {"checkpoint": str(checkpoint), "workload": "digits"}
    assert write_served(spec, settings(digits_workload, int8_dynamic=True), out)["format"] == RECIPE
    content = torch.load(out, weights_only=True)
    recipe = json.loads(content["autotune"])
    marker = tmp_path / "imported"
    crafted = tmp_path / "crafted.pt"
    torch.save({**content, "autotune": json.dumps({
        **recipe, "spec": {**recipe["spec"], "workload": "autotune_zip_payload:make",
                           "workdir": f"{crafted}/crafted"}})}, crafted)
    with zipfile.ZipFile(crafted, "a") as archive:
        assert archive.namelist()[0].startswith("crafted/")
        archive.writestr("crafted/autotune_zip_payload.py", f"open({str(marker)!r}, 'w').close()\ndef make(): pass\n")
    with pytest.raises(UsageError, match="cannot import module 'autotune_zip_payload'"):
        autotune.load_served(crafted)
    assert not marker.exists()
