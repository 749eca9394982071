"""micro_batches: a batch trained as micro-batches (gradient accumulation) learns what the whole
batch learns; out of memory, a run retries with smaller ones, and the study learns the largest
that fits.
"""

from __future__ import annotations

from typing import Callable

import optuna
import pytest
import torch
from torch import nn

from autotune.hardware import Hardware
from autotune.registry import Registry
from autotune.run.types import RunResult
from autotune.study.objective import infeasible
from autotune.workloads import Workload

from knob_case import Case
from mlp_runs import Recorder, assert_same_weights, mlp, run, tiny_lm, workload


class FitsRows(nn.Module):
    """The MLP, with a real fault: a training forward of more than `limit` samples raises what
    CUDA's allocator raises when memory runs out. `rows` records the forwards that ran."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.net = mlp()
        self.limit = limit
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory: {x.shape[0]} samples (this model fits {self.limit})")
        if self.training:
            self.rows.append(int(x.shape[0]))
        return self.net(x)


@pytest.mark.parametrize("name", ["micro_batches"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    assert case.base_value == 1
    assert "micro_batches" not in case.baseline.result.notes
    probe = case.run(micro_batches=2)
    batch = case.settings()["batch_size"]
    assert probe.first_forward["input_shape"][0] == batch // 2
    assert probe.result.samples == case.baseline.result.samples  # the batch stays the effective batch
    notes = probe.result.notes
    assert notes["micro_batches"] == 2 and notes["micro_batch_rows"] == batch // 2
    assert "normalises each micro-batch" in notes["micro_batches_batch_norm"]  # LeNet has BatchNorm


@pytest.mark.parametrize("parts", [4, 3])
def test_micro_batches_train_as_the_whole_batch(registry: Registry, hardware: Hardware, parts: int) -> None:
    whole, split = Recorder(mlp), Recorder(mlp)
    base = run(registry, hardware, workload(whole))
    result = run(registry, hardware, workload(split), micro_batches=parts)
    assert base.status == result.status == "ok", result.error
    assert result.steps == base.steps == 8 and result.samples == base.samples == 7 * 32 + 8
    assert result.notes["micro_batches"] == parts
    assert result.notes["micro_batch_rows"] == -(-32 // parts)  # 11 for 3 parts: 11, 11, 10
    assert "micro_batches" not in base.notes and "micro_batch_retries" not in result.notes
    assert_same_weights(whole.weights(), split.weights())
    assert result.val_loss == pytest.approx(base.val_loss, abs=1e-6)


def test_out_of_memory_retries_with_smaller_micro_batches(registry: Registry, hardware: Hardware) -> None:
    faulty = Recorder(lambda: FitsRows(limit=10))
    plain = Recorder(lambda: FitsRows(limit=10**6))
    result = run(registry, hardware, workload(faulty))  # micro_batches=1, the baseline
    assert result.status == "ok", result.error
    # 32 samples ran out of memory, then 16; micro-batches of 8 fit, and later steps keep them
    assert result.notes["micro_batch_retries"] == 2
    assert result.notes["micro_batches"] == 4 and result.notes["micro_batch_rows"] == 8
    assert result.notes["out_of_memory_rows"] == 16
    assert max(faulty.models[-1].rows) <= 10 and result.samples == 7 * 32 + 8
    never_faulted = run(registry, hardware, workload(plain), micro_batches=4)
    assert never_faulted.status == "ok" and "micro_batch_retries" not in never_faulted.notes
    assert_same_weights(faulty.weights(), plain.weights())

    # what the trial's attributes carry teaches the study the largest micro-batch that fits
    trial = finished_trial(result)
    assert infeasible({**result.settings, "micro_batches": 2}, [trial]) is not None  # 16 samples
    assert infeasible({**result.settings, "micro_batches": 4}, [trial]) is None  # 8
    assert infeasible({**result.settings, "batch_size": 64, "micro_batches": 8}, [trial]) is None


def test_out_of_memory_at_one_sample_fails_the_run(registry: Registry, hardware: Hardware) -> None:
    result = run(registry, hardware, workload(lambda: FitsRows(limit=0)), steps=2)
    assert result.status == "oom" and "out of memory" in result.error
    assert result.notes["out_of_memory_rows"] == 1
    assert result.notes["micro_batch_retries"] == 5  # 32 -> 16 -> 8 -> 4 -> 2 -> 1 sample


def test_micro_batches_with_a_workloads_own_train_step(registry: Registry, hardware: Hardware, lm: Workload) -> None:
    """tinylm's train_step averages over its batch's tokens, so the split step equals the whole.
    With SGD: Adam divides each gradient by its own running size, which blows rounding noise in
    near-zero gradients up to a whole step (1.8e-6 apart after 3 steps, measured)."""
    whole_lm, split_lm = tiny_lm(lm), tiny_lm(lm)
    base = run(registry, hardware, whole_lm, steps=3, batch_size=8, optimizer="sgd", learning_rate=0.5)
    result = run(registry, hardware, split_lm, steps=3, batch_size=8, optimizer="sgd", learning_rate=0.5,
                 micro_batches=2)
    assert base.status == result.status == "ok", result.error
    assert result.notes["micro_batches"] == 2
    assert_same_weights(whole_lm.model_fn.weights(), split_lm.model_fn.weights())


def finished_trial(result: RunResult) -> optuna.trial.FrozenTrial:
    """A finished Optuna trial with the attributes the study records of a run."""
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE if result.ok else optuna.trial.TrialState.FAIL,
        value=1.0 if result.ok else None,
        user_attrs={"settings": result.settings, "notes": result.notes, "autotune_status": result.status},
    )


def test_infeasible_region_is_in_micro_batch_samples() -> None:
    settings = {"batch_size": 256, "micro_batches": 1, "precision": "fp32", "learning_rate": 0.1}
    oom = optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, user_attrs={"settings": settings, "autotune_status": "oom"}
    )
    reason = infeasible({**settings, "batch_size": 400, "learning_rate": 0.01}, [oom])
    assert reason is not None and "batch_size 400 >= 256" in reason
    reason = infeasible({**settings, "batch_size": 512, "micro_batches": 2}, [oom])
    assert reason is not None and "micro-batches of 256 samples" in reason
    assert infeasible({**settings, "batch_size": 512, "micro_batches": 4}, [oom]) is None
    assert infeasible({**settings, "batch_size": 400, "precision": "bf16"}, [oom]) is None  # other memory
    assert infeasible({**settings, "batch_size": 128}, [oom]) is None
