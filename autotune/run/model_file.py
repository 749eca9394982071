"""The file a model is kept in (`trial run --save-model`, a served recipe of `study export
--model`), read back without running any code it might hold.

A file is one `torch.save` of a dict of two entries: `"autotune"`, JSON text (what the model is and
how to rebuild it), and `"state_dict"`, tensors only. It is read with
`torch.load(weights_only=True)`, whose unpickler builds tensors and plain containers and nothing
else, so `torch.load(PATH, weights_only=True)` also reads it without autotune.

autotune's first format (`torch.save` of one dict, the description beside the tensors) reads the
same way, unless it held a pickled module (a structured-pruned model's): then, like any file that
needs pickle, it is refused with one line (`PickleRefused`) naming the option that trusts it, and
read with that option by `_unpickle`, the one place autotune unpickles a file.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from autotune.errors import UsageError

INFO, WEIGHTS = "autotune", "state_dict"
TRUST_OPTION = "--trust-pickle"


class PickleRefused(UsageError):
    """A model file that needs pickle to read, refused until its user says they trust it."""


def refused(label: str, trust: str,
            holds: str = "pickled Python objects (autotune's first model format, or a file that is not autotune's)",
            ) -> PickleRefused:
    """The one line that refuses a file needing pickle: what it `holds`, and the option that trusts it."""
    return PickleRefused(f"{label}: refused: it holds {holds}, and unpickling runs whatever code they carry; "
                         f"if you trust where it came from, pass {trust}")


def write_model_file(path: str | os.PathLike[str], info: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Write `info` (JSON) and `state` (tensors) to `path` atomically; raises what writing raised
    (TypeError for a value JSON cannot hold, OSError), the file left as it was."""
    text = json.dumps(info)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        torch.save({INFO: text, WEIGHTS: state}, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_torch_save(path: str | os.PathLike[str]) -> bool:
    """A `torch.save` archive (its pickle at `<root>/data.pkl`): not a torch.export package, not
    a bare pickle, not anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.count("/") == 1 and name.endswith("/data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read_model_file(path: str | os.PathLike[str], label: str, what: str, trust_pickle: bool = False,
                    trust: str = TRUST_OPTION) -> dict[str, Any]:
    """The description of the file at `path` with its tensors under "state_dict" (a file of
    the first format: its dict as saved). UsageError starting with `label`: no such file, not
    `what` (a phrase: "not {what}"), unreadable; PickleRefused, naming `trust`, when it needs
    pickle and `trust_pickle` is not set."""
    target = Path(path)
    if not target.is_file():
        raise UsageError(f"{label}: no such file")
    if not is_torch_save(target):
        raise UsageError(f"{label}: not {what}")
    try:
        content = torch.load(target, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust_pickle:
            raise refused(label, trust) from None
        content = _unpickle(target, label)
    except Exception as exc:
        raise UsageError(f"{label}: cannot read it: {_first_line(exc)}") from None
    if not isinstance(content, dict):
        raise UsageError(f"{label}: not {what}")
    if INFO not in content:
        return content
    try:
        info = json.loads(content[INFO])
    except (TypeError, ValueError):
        info = None
    if not isinstance(info, dict) or not isinstance(content.get(WEIGHTS), dict):
        raise UsageError(f"{label}: not {what}")
    return {**info, WEIGHTS: content[WEIGHTS]}


def _unpickle(target: Path, label: str) -> Any:
    """The whole file unpickled: whatever code its pickle names runs. Only for a file its user
    said they trust (--trust-pickle, trust_pickle=True)."""
    try:
        return torch.load(target, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UsageError(f"{label}: cannot read it: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
