"""A trained model's file (autotune.run.saving, autotune.run.model_file): JSON and tensors, read
with `torch.load(weights_only=True)` and rebuilt through the workload; narrower layers and pruning
masks rebuilt too; a file that needs pickle (autotune's first format) refused with one line naming
--trust-pickle, and read with it.

Models are fresh (untrained) digits and tinylm models: what is tested is the file, not training.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from autotune.cli import cli
from autotune.home import study_dir
from autotune.plugins import channel_pruning
from autotune.registry import load_registry
from autotune.run.model_file import PickleRefused
from autotune.run.saving import (FIRST_FORMAT, FORMAT, MODULE, RESHAPED, STATE_DICT, current, model_from,
                                 read_checkpoint, save_model)
from autotune.spec import StudySpec
from autotune.workloads import Workload, load_workload

METRIC = {"name": "accuracy", "direction": "maximize"}
UNPICKLED: list[str] = []  # what `_mark` was called with: a pickle that ran


def _mark(text: str) -> list[str]:
    UNPICKLED.append(text)
    return UNPICKLED


class RunsCode:
    """An object whose unpickling runs code (here, only `_mark`)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_mark, ("unpickled",))


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def digits_input(digits_workload: Workload) -> torch.Tensor:
    return torch.stack([digits_workload.val_data[i][0] for i in range(4)])


@pytest.fixture
def digits_model(digits_workload: Workload) -> torch.nn.Module:
    torch.manual_seed(0)
    return digits_workload.model_fn().eval()


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def first_format(path: Path, model: torch.nn.Module, workload: Workload, module: bool) -> None:
    """A file as autotune's first format wrote it: one torch.save of the description beside
    the tensors and, for a model whose layers changed shape, the pickled module itself."""
    payload: dict[str, Any] = {
        "format": FIRST_FORMAT, "workload": workload.name, "settings": {"learning_rate": 0.05}, "metric": METRIC,
        "metrics": {"accuracy": 0.5}, "structure": MODULE if module else STATE_DICT, "data_dir": None,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    if module:
        payload[MODULE] = model
    torch.save(payload, path)


def test_a_saved_model_is_json_and_tensors_and_rebuilds_through_the_workload(
    tmp_path: Path, digits_workload: Workload, digits_model: torch.nn.Module,
    digits_input: torch.Tensor,
) -> None:
    path = tmp_path / "digits.pt"
    info = save_model(digits_model, path, digits_workload, {"learning_rate": 0.05}, METRIC, {"accuracy": 0.5})
    assert info["format"] == FORMAT and info["structure"] == STATE_DICT and "state_dict" not in info
    # plain torch reads it without pickle: the description is JSON text, the weights tensors only
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"autotune", "state_dict"}
    described = json.loads(raw["autotune"])
    assert described["workload"] == "digits" and described["settings"] == {"learning_rate": 0.05}
    assert all(isinstance(t, torch.Tensor) for t in raw["state_dict"].values())
    payload = read_checkpoint(path)
    assert payload["metrics"] == {"accuracy": 0.5} and payload["metric"] == METRIC
    rebuilt = model_from(payload, digits_workload)
    assert same_outputs(digits_model, rebuilt, digits_input)


@pytest.mark.skipif(channel_pruning.unavailable() is not None, reason=str(channel_pruning.unavailable()))
@pytest.mark.parametrize("name", ["digits", "tinylm"])
def test_narrower_layers_are_rebuilt_from_the_workload_without_pickle(tmp_path: Path, name: str) -> None:
    """structured_pruning's narrower layers (LeNet's channels, tinylm's MLP width): the file
    records the layers' changed attributes, and loading reshapes a fresh model to the saved
    tensors; the rebuilt model computes what the pruned one did."""
    from autotune.plugins.training.structured_pruning import example_call, prune_channels

    workload = load_workload(name, load_registry(entry_points=False))
    torch.manual_seed(0)
    model = workload.model_fn()
    call = example_call(workload, model)
    prune_channels(model, 0.5, call)
    path = tmp_path / "pruned.pt"
    info = save_model(model, path, workload, {"structured_pruning": 0.5}, METRIC, {})
    assert info["structure"] == RESHAPED and f"differ from a fresh {name} model's" in info["note"]
    payload = read_checkpoint(path)
    assert payload["layers"]  # e.g. {"features.0": {"out_channels": 8}, ...}
    rebuilt = model_from(payload, workload)
    args, kwargs = call
    with torch.no_grad():
        assert torch.equal(model.eval()(*args, **kwargs), rebuilt(*args, **kwargs))
    assert str(rebuilt) == str(model)  # every layer says its new width
    if name == "digits":
        assert rebuilt.features[0].out_channels == 8  # 16 channels, half removed


def test_pruning_masks_are_folded_into_the_weights(
    tmp_path: Path, digits_workload: Workload, digits_model: torch.nn.Module,
    digits_input: torch.Tensor,
) -> None:
    from torch.nn.utils import prune

    conv = digits_model.features[0]
    prune.l1_unstructured(conv, "weight", amount=0.5)  # leaves weight_orig, weight_mask and a hook
    path = tmp_path / "masked.pt"
    assert save_model(digits_model, path, digits_workload, {}, METRIC, {})["structure"] == STATE_DICT
    payload = read_checkpoint(path)
    assert not any(k.endswith(("_orig", "_mask")) for k in payload["state_dict"])
    rebuilt = model_from(payload, digits_workload)
    assert torch.equal(rebuilt.features[0].weight, conv.weight_orig * conv.weight_mask)
    assert same_outputs(digits_model, rebuilt, digits_input)


def test_a_file_that_needs_pickle_is_refused_with_one_line_and_read_when_trusted(
    tmp_path: Path, digits_workload: Workload, digits_model: torch.nn.Module,
    digits_input: torch.Tensor,
) -> None:
    old = tmp_path / "old.pt"
    first_format(old, digits_model, digits_workload, module=True)
    with pytest.raises(PickleRefused) as refused:
        read_checkpoint(old)
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"--checkpoint {old}: refused: it holds pickled Python objects")
    assert line.endswith("pass --trust-pickle")
    trusted = read_checkpoint(old, trust_pickle=True)
    assert trusted["structure"] == MODULE
    assert same_outputs(digits_model, model_from(trusted, digits_workload), digits_input)
    # turned into this format: the same model, read without pickle
    new = current(trusted, digits_workload)
    assert new["format"] == FORMAT and new["structure"] == STATE_DICT
    assert same_outputs(digits_model, model_from(new, digits_workload), digits_input)
    # a first-format file of tensors only needs no pickle: it reads as it is
    plain = tmp_path / "plain.pt"
    first_format(plain, digits_model, digits_workload, module=False)
    assert same_outputs(digits_model, model_from(read_checkpoint(plain), digits_workload), digits_input)


def test_code_in_a_refused_file_never_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs-code.pt"
    torch.save({"format": FIRST_FORMAT, "workload": "digits", "state_dict": {}, "extra": RunsCode()}, path)
    UNPICKLED.clear()
    with pytest.raises(PickleRefused):
        read_checkpoint(path)
    assert UNPICKLED == []
    read_checkpoint(path, trust_pickle=True)  # trusted, it is unpickled in full
    assert UNPICKLED == ["unpickled"]
    # a bare pickle is no torch.save archive: not a model file, trusted or not, and never unpickled
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps(RunsCode()))
    UNPICKLED.clear()
    for trust in (False, True):
        with pytest.raises(Exception, match="not a model saved by autotune"):
            read_checkpoint(bare, trust_pickle=trust)
    assert UNPICKLED == []


def test_trial_serve_refuses_an_old_file_in_one_line_and_serves_it_with_trust_pickle(
    tmp_path: Path, digits_workload: Workload, digits_model: torch.nn.Module
) -> None:
    old = tmp_path / "old.pt"
    first_format(old, digits_model, digits_workload, module=True)
    args = ["trial", "serve", "--checkpoint", str(old), "--set", "serve_threads=1", "--iterations", "1", "--json"]
    refused = invoke(*args)
    assert refused.exit_code == 2, refused.output
    assert refused.stdout == "" and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "pass --trust-pickle" in refused.stderr
    served = invoke(*args, "--trust-pickle")
    assert served.exit_code == 0, served.output
    assert json.loads(served.stdout)["status"] == "ok"


def test_study_start_with_trust_pickle_serves_a_copy_without_pickle(
    tmp_path: Path, digits_workload: Workload, digits_model: torch.nn.Module,
    digits_input: torch.Tensor,
) -> None:
    from autotune.study.checkpoint import trust_checkpoint

    old = tmp_path / "old.pt"
    first_format(old, digits_model, digits_workload, module=True)
    refused = invoke("study", "start", "--name", "served", "--task", "inference", "--checkpoint", str(old), "--no-tui")
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and refused.stderr.strip().endswith("pass --trust-pickle")
    spec = StudySpec(name="served", task="inference", objective="latency", checkpoint=str(old), workload=None)
    trust_checkpoint(spec)
    assert spec.checkpoint == str(study_dir("served") / "checkpoint.pt")
    copy = read_checkpoint(spec.checkpoint)  # no trust needed any more
    assert copy["format"] == FORMAT and copy["settings"] == {"learning_rate": 0.05}
    assert same_outputs(digits_model, model_from(copy, digits_workload), digits_input)
    # a file that needs no pickle stays where it is
    new = tmp_path / "new.pt"
    save_model(digits_model, new, digits_workload, {}, METRIC, {})
    spec = StudySpec(name="served2", task="inference", objective="latency", checkpoint=str(new), workload=None)
    trust_checkpoint(spec)
    assert spec.checkpoint == str(new)


def test_the_only_unpickling_load_is_the_trusted_one() -> None:
    """Every torch.load in autotune reads with weights_only=True, but one: model_file._unpickle,
    reached only through --trust-pickle / trust_pickle=True. A new unpickling load fails here."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    unpickling = []
    for folder in ("autotune", "plugins", "tui"):
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
                for call in [n for n in ast.walk(function) if isinstance(n, ast.Call)]:
                    named = getattr(call.func, "attr", getattr(call.func, "id", ""))
                    if named not in ("load", "loads"):
                        continue
                    safe = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                               for k in call.keywords)
                    owner = getattr(call.func, "value", None)
                    if not safe and getattr(owner, "id", "") in ("torch", "pickle"):
                        unpickling.append(f"{path.relative_to(root)}:{function.name}")
    assert sorted(set(unpickling)) == ["autotune/run/model_file.py:_unpickle"]
