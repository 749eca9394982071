"""activation_checkpointing: blocks recomputed in the backward pass keep less memory and learn the
same weights (mlp_runs.py; on CUDA, a lower peak `gpu`).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from autotune.budget import Budget
from autotune.hardware import Hardware, detect
from autotune.registry import Registry
from autotune.run import engine
from autotune.settings import resolve_settings
from autotune.workloads import Workload

from knob_case import Case
from mlp_runs import CLASSES, FEATURES, Recorder, assert_same_weights, mlp, run, tiny_lm, workload


@pytest.mark.parametrize("name", ["activation_checkpointing"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.base_value is False
    assert "activation_checkpointing_blocks" not in case.baseline.result.notes
    assert [order for order, _ in case.plan(activation_checkpointing=True).model_transforms] == [30]
    probe = case.run(activation_checkpointing=True)
    # LeNet's largest Sequential (features, 8 layers) in 3 segments; the tests below have the rest
    assert probe.result.notes["activation_checkpointing_blocks"] == ["features[0:3]", "features[3:6]", "features[6:8]"]
    assert probe.result.notes["activation_checkpointing_memory"]["saved_fraction"] > 0
    # the same numbers: its BatchNorm statistics are not updated again by the recomputation
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=1e-6)


def test_checkpointing_an_mlp_keeps_less_and_learns_the_same(registry: Registry, hardware: Hardware) -> None:
    plain, checkpointed = Recorder(mlp), Recorder(mlp)
    base = run(registry, hardware, workload(plain))
    result = run(registry, hardware, workload(checkpointed), activation_checkpointing=True)
    assert base.status == result.status == "ok", result.error
    assert result.notes["activation_checkpointing_blocks"] == ["[0:3]", "[3:6]", "[6:9]"]
    memory = result.notes["activation_checkpointing_memory"]
    assert memory["bytes_per_sample_with"] < memory["bytes_per_sample_without"]
    assert result.val_loss == pytest.approx(base.val_loss, abs=1e-6)
    assert_same_weights(plain.weights(), checkpointed.weights())


def test_checkpointing_tinylm_blocks(registry: Registry, hardware: Hardware, lm: Workload) -> None:
    plain, checkpointed = tiny_lm(lm), tiny_lm(lm)
    base = run(registry, hardware, plain, steps=3, batch_size=16)
    result = run(registry, hardware, checkpointed, steps=3, batch_size=16, activation_checkpointing=True)
    assert base.status == result.status == "ok", result.error
    assert result.notes["activation_checkpointing_blocks"] == ["blocks.0", "blocks.1"]
    memory = result.notes["activation_checkpointing_memory"]
    assert memory["bytes_per_sample_with"] < memory["bytes_per_sample_without"]
    assert result.val_loss == pytest.approx(base.val_loss, abs=1e-6)
    assert_same_weights(plain.model_fn.weights(), checkpointed.model_fn.weights())


def test_checkpointing_the_modules_a_workload_names(registry: Registry, hardware: Hardware, lm: Workload) -> None:
    named = tiny_lm(lm, checkpoint_modules=("blocks.1.mlp",))
    result = run(registry, hardware, named, steps=1, batch_size=8, activation_checkpointing=True)
    assert result.status == "ok", result.error
    assert result.notes["activation_checkpointing_blocks"] == ["blocks.1.mlp"]
    wrong = tiny_lm(lm, checkpoint_modules=("blocks.7",))
    result = run(registry, hardware, wrong, steps=1, batch_size=8, activation_checkpointing=True)
    assert result.status == "failed"
    assert "checkpoint_modules names 'blocks.7', which its model (TinyLM) does not have" in result.error


def test_checkpointing_does_not_apply_without_blocks(registry: Registry, hardware: Hardware) -> None:
    result = run(registry, hardware, workload(lambda: nn.Linear(FEATURES, CLASSES)), steps=1,
                 activation_checkpointing=True)
    assert result.status == "ok", result.error
    assert result.notes["activation_checkpointing"].startswith("not applied: the model (Linear) has no")
    assert "activation_checkpointing_memory" not in result.notes


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_checkpointing_lowers_peak_memory_on_cuda(registry: Registry, lm: Workload) -> None:
    cuda = detect("cuda")
    peaks = {}
    for on in (False, True):
        work = tiny_lm(lm)
        settings = resolve_settings(registry, cuda, work, {"batch_size": 256, "activation_checkpointing": on})
        result = engine.run(work, settings, registry, cuda, Budget(steps=3), device="cuda")
        assert result.status == "ok", result.error
        peaks[on] = result.peak_memory_bytes
    assert peaks[True] < peaks[False]
