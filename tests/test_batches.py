"""Batches of any structure (autotune.batches): split into parts along their batch dimension, mapped
tensor by tensor, their type and shape kept.
"""

from __future__ import annotations

import dataclasses

import torch

from autotune import batches


@dataclasses.dataclass
class Pair:
    image: torch.Tensor
    label: torch.Tensor


def test_batches_of_any_structure_split_and_keep_their_shape() -> None:
    batch = {"x": torch.arange(10).reshape(5, 2), "y": torch.arange(5), "scale": torch.tensor(2.0)}
    parts = batches.split(batch, 2)
    assert [batches.batch_size(p) for p in parts] == [3, 2]
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    assert all(p["scale"] is batch["scale"] for p in parts)  # no batch dimension: shared
    pair = Pair(torch.zeros(4, 3, 2, 2), torch.arange(4))
    moved = batches.map_tensors(pair, lambda t: t + 1)
    assert isinstance(moved, Pair) and moved.label.tolist() == [1, 2, 3, 4]
    assert len(batches.split(pair, 8)) == 4  # never more parts than samples
