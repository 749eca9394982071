"""The memory levers: `micro_batches` (gradient accumulation, automatic micro-batching on
out-of-memory) and `activation_checkpointing`, in real short CPU runs (`engine.run`, in-process).

A run's final weights are read from the model its workload built (`Recorder`), so a test can
compare two runs' weights; runs are seeded, so equal settings give equal weights on CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optuna
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autotune.budget import Budget
from autotune.hardware import Hardware, detect
from autotune.registry import Registry
from autotune.run import engine
from autotune.run.types import RunResult
from autotune.settings import resolve_settings
from autotune.study.objective import infeasible
from autotune.workloads import Workload

FEATURES, CLASSES, WIDTH = 8, 3, 64
RECIPE = {"batch_size": 32, "optimizer": "sgd", "learning_rate": 0.05, "momentum": 0.9, "precision": "fp32"}


class Recorder:
    """A model factory that keeps the models it built: the last one holds a run's final weights."""

    def __init__(self, build: Callable[[], nn.Module]) -> None:
        self.build = build
        self.models: list[nn.Module] = []

    def __call__(self) -> nn.Module:
        self.models.append(self.build())
        return self.models[-1]

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.models[-1].state_dict().items()}


def mlp() -> nn.Sequential:
    """Four hidden layers, no BatchNorm, no dropout: an nn.Sequential of 9 layers."""
    layers: list[nn.Module] = [nn.Linear(FEATURES, WIDTH), nn.ReLU()]
    for _ in range(3):
        layers += [nn.Linear(WIDTH, WIDTH), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, CLASSES))


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


def _data(n: int, seed: int) -> TensorDataset:
    inputs = torch.randn(n, FEATURES, generator=torch.Generator().manual_seed(seed))
    mix = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99))
    return TensorDataset(inputs, (inputs @ mix).argmax(dim=1))


def workload(build: Callable[[], nn.Module]) -> Workload:
    """200 samples: six batches of 32 and a short one of 8 an epoch."""
    return Workload(name="memory-mlp", model_fn=build, train_data=_data(200, 0), val_data=_data(64, 1),
                    input_shape=(FEATURES,), baseline=dict(RECIPE))


def run(registry: Registry, hardware: Hardware, work: Workload, steps: int = 8, **settings: Any) -> RunResult:
    resolved = resolve_settings(registry, hardware, work, settings)
    result = engine.run(work, resolved, registry, hardware, Budget(steps=steps), device="cpu")
    return result


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=atol), f"{name}: {(a[name] - b[name]).abs().max()}"


# --- micro_batches ---------------------------------------------------------------------------


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


# --- activation_checkpointing ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lm() -> Workload:
    from autotune.plugins.workloads.catalog import tinylm

    return tinylm()


def tiny_lm(base: Workload, **changes: Any) -> Workload:
    """tinylm with its models recorded, and a short validation set (what is compared is the same)."""
    val = torch.utils.data.Subset(base.val_data, range(64))
    return dataclasses.replace(base, model_fn=Recorder(base.model_fn), val_data=val, **changes)


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
