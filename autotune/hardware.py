"""What machine a run happens on: the fingerprint stored with every study."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Hardware:
    device_type: str  # "cuda", "mps" or "cpu"
    device_name: str
    device_count: int
    cpu_count: int
    cpu_name: str
    memory_bytes: int
    torch_version: str
    precisions: tuple[str, ...]
    gpu_memory_bytes: int | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def is_cuda(self) -> bool:
        return self.device_type == "cuda"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["precisions"] = list(self.precisions)
        return data


def available_device_types() -> list[str]:
    types = []
    if torch.cuda.is_available():
        types.append("cuda")
    if torch.backends.mps.is_available():
        types.append("mps")
    types.append("cpu")
    return types


def default_device_type() -> str:
    """CUDA, then MPS, then CPU. (torch.accelerator reports cuda even without a GPU here.)"""
    return available_device_types()[0]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _autocast_runs(device_type: str, dtype: torch.dtype) -> bool:
    """Try a tiny convolution under autocast: the honest test of whether a precision runs."""
    try:
        conv = torch.nn.Conv2d(1, 2, 3).to(device_type)
        x = torch.randn(1, 1, 5, 5, device=device_type)
        with torch.autocast(device_type=device_type, dtype=dtype):
            conv(x).sum().float().item()
        return True
    except Exception:
        return False


@functools.lru_cache(maxsize=None)
def detect(device_type: str | None = None) -> Hardware:
    """Fingerprint the machine for `device_type` (default: the best available)."""
    device_type = device_type or default_device_type()
    notes: dict[str, str] = {}
    gpu_memory = None
    count = 1
    if device_type == "cuda":
        props = torch.cuda.get_device_properties(0)
        name = props.name
        gpu_memory = props.total_memory
        count = torch.cuda.device_count()
        precisions = ["fp32", "fp16"]
        if torch.cuda.is_bf16_supported():
            precisions.insert(1, "bf16")
    elif device_type == "mps":
        name = "Apple MPS"
        precisions = ["fp32"] + [
            p for p, d in (("bf16", torch.bfloat16), ("fp16", torch.float16)) if _autocast_runs("mps", d)
        ]
    else:
        name = _cpu_name()
        precisions = ["fp32"]
        if _autocast_runs("cpu", torch.bfloat16):
            precisions.append("bf16")
        if _autocast_runs("cpu", torch.float16):
            precisions.append("fp16")
            notes["fp16"] = "fp16 autocast runs on CPU but is far slower than fp32 (no fp16 kernels)"
    return Hardware(
        device_type=device_type,
        device_name=name,
        device_count=count,
        cpu_count=_cpu_count(),
        cpu_name=_cpu_name(),
        memory_bytes=_memory_bytes(),
        torch_version=torch.__version__,
        precisions=tuple(precisions),
        gpu_memory_bytes=gpu_memory,
        notes=notes,
    )
