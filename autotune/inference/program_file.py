"""What in a `torch.export` program's file (`.pt2`, written by `torch.export.save`) would be
unpickled, or run as native code, by `torch.export.load` (torch 2.14,
torch/export/pt2_archive/_package.py):

- weights and constants marked `use_pickle` (tensor subclasses: `torch.load` unrestricted),
  custom objects (`torch._C._pickle_load_obj`) and opaque objects (`pickle.loads`);
- the sample inputs, which it reads with `weights_only=True` and, when that fails, again
  unrestricted: a crafted file runs its code there;
- compiled AOTInductor libraries, which it loads as shared libraries, and the layouts of older
  versions, read through `torch.load`.

Plain tensors are raw bytes and the program's graph is JSON, which torch's verifier limits to
operators when the program is built. So a file whose every member is one of those, and whose
sample inputs load with `weights_only=True`, loads without unpickling anything.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from typing import IO

import torch

# members read without pickle, by path below the archive's root folder
_PLAIN = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[^/]+\.json|extra/.+|data/weights/weight_[^/]+|data/constants/tensor_[^/]+)"
)
_CONFIG = re.compile(r"data/(weights|constants)/[^/]+_(weights|constants)_config\.json")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/[^/]+\.pt")


def pickled_members(file: str | os.PathLike[str] | IO[bytes]) -> list[str]:
    """The members of the program's archive `torch.export.load` would unpickle or load as code,
    by name (a weight or constant by its name in the program); [] when none. Raises
    zipfile.BadZipFile when `file` is not an archive."""
    found: list[str] = []
    with zipfile.ZipFile(file) as archive:
        for name in archive.namelist():
            member = name.split("/", 1)[1] if "/" in name else name
            if not member or member.endswith("/") or _PLAIN.fullmatch(member):
                continue
            if _CONFIG.fullmatch(member):
                found += _pickled_entries(archive.read(name), member)
            elif _SAMPLE_INPUTS.fullmatch(member):
                if not _loads_without_pickle(archive.read(name)):
                    found.append(member)
            else:
                found.append(member)
    return found


def _pickled_entries(config: bytes, member: str) -> list[str]:
    """The entries of a weights or constants config that are not a plain tensor's raw bytes."""
    try:
        entries = json.loads(config).get("config") or {}
    except (ValueError, AttributeError):
        return [member]
    return [f"{member}: {fqn}" for fqn, meta in entries.items()
            if not isinstance(meta, dict) or meta.get("use_pickle")
            or not str(meta.get("path_name", "")).startswith(("weight_", "tensor_"))]


def _loads_without_pickle(data: bytes) -> bool:
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        return False
    return True
