"""The few agreements the processes of a data-parallel run need, as torch.distributed collectives."""

from __future__ import annotations

import torch
import torch.distributed as dist


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


class Collective:
    """The few agreements a data-parallel run needs, as collectives over the process group."""

    def __init__(self, device: torch.device) -> None:
        # NCCL only moves device tensors; gloo takes CPU tensors
        self.device = device

    def any(self, *flags: bool) -> list[bool]:
        """Each flag is True on every process when it is True on any process."""
        values = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(v) for v in values.tolist()]

    def from_first(self, flag: bool) -> bool:
        """Process 0's flag, on every process."""
        value = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def sum(self, *values: float) -> list[float]:
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.tolist()
