"""The knob contract (autotune.knob): the order knobs apply in, and what a knob needs of the
hardware and of the workload.
"""

from __future__ import annotations

import dataclasses

import pytest

from autotune import Knob, Need, Param
from autotune.hardware import detect
from autotune.knob import Traits, apply_order, exclusion


class _Ordered(Knob):
    help = "test"

    def __init__(self, name: str, after: tuple[str, ...] = (), needs: tuple[Need, ...] = ()) -> None:
        self.name, self.after, self.needs = name, after, needs

    def params(self, hardware):  # noqa: ANN001, ANN201
        return [Param(self.name, "bool")]


def test_apply_order_follows_after_then_registration_and_rejects_cycles() -> None:
    knobs = [_Ordered("a", after=("c",)), _Ordered("b"), _Ordered("c", after=("missing",)), _Ordered("d", after=("a",))]
    assert [k.name for k in apply_order(knobs)] == ["c", "a", "b", "d"]
    with pytest.raises(ValueError, match="a -> b -> a"):
        apply_order([_Ordered("a", after=("b",)), _Ordered("b", after=("a",))])


def test_needs_are_checked_against_hardware_and_traits() -> None:
    cpu = detect("cpu")
    assert exclusion(_Ordered("x", needs=(Need.CUDA,)), cpu) == "needs CUDA (this machine trains on cpu)"
    images = _Ordered("x", needs=(Need.IMAGE_INPUTS,))
    assert exclusion(images, cpu, Traits(image_inputs=False)) == "the workload's batches hold no 4-D (image) tensors"
    assert exclusion(images, cpu, Traits()) is None  # unknown: nothing is left out
    several = _Ordered("x", needs=(Need.SEVERAL_DEVICES,))
    assert exclusion(several, dataclasses.replace(cpu, cpu_count=1)) == "needs 2+ devices for the trial"
