"""Every built-in knob, applied for real: its baseline and another value, each visible in a run.

One shared run has every knob at its own baseline; each knob then gets a run with only its value
changed: the real digits workload, two steps, on CPU. A probe wraps the workload so the run
reports what happened inside it: the thread count when the model is built, the memory format and
sparsity of the weights at the first forward pass, the dtype of the model's outputs, and which
processes loaded training samples.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from autotune.run import engine
from autotune.settings import resolve_settings, settings_index
from autotune.budget import Budget
from autotune.run.local import build_plan
from autotune.run.measure import nonzero_fraction
from autotune.run.types import RunResult
from autotune.errors import UsageError
from autotune.hardware import Hardware, detect
from autotune.knob import Knob, exclusion
from autotune.run.plan import Rank, TrainingPlan
from autotune.registry import DEFAULT_PLUGINS, Registry, load_registry
from autotune.plugins.workloads.vision import LeNet
from autotune.workloads import Workload

STEPS = 2
CPU = torch.device("cpu")


def _builtin_knob_names() -> list[str]:
    registry = load_registry(entry_points=False)
    return [name for name, plugin in registry.knob_plugins.items() if plugin in DEFAULT_PLUGINS]


BUILTIN_KNOBS = _builtin_knob_names()


class _PidRecording(Dataset):
    """A dataset that leaves a file named after each process that loads a sample from it."""

    def __init__(self, data: Dataset, directory: Path) -> None:
        self.data = data
        self.directory = directory
        self._recorded_in: int | None = None

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        if self._recorded_in != os.getpid():
            (self.directory / str(os.getpid())).touch()
            self._recorded_in = os.getpid()
        return self.data[index]


class Probe:
    """The digits workload, instrumented; `run()` trains it and keeps what it saw."""

    def __init__(self, workload: Workload, directory: Path) -> None:
        self.base = workload
        self.pid_dir = directory
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.threads_at_build: int | None = None
        self.first_forward: dict[str, Any] | None = None
        self.output_dtypes: set[torch.dtype] = set()
        self.result: RunResult | None = None
        self.workload = dataclasses.replace(
            workload, model_fn=self._model, train_data=_PidRecording(workload.train_data, directory)
        )

    def _model(self) -> nn.Module:
        self.threads_at_build = torch.get_num_threads()
        model = self.base.model_fn()
        model.register_forward_pre_hook(self._before_forward)
        model.register_forward_hook(lambda module, args, output: self.output_dtypes.add(output.dtype))
        return model

    def _before_forward(self, model: nn.Module, args: Any) -> None:
        if self.first_forward is not None or not model.training:
            return
        # the second conv: with one input channel the first is contiguous in both formats
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)
        self.first_forward = {
            "threads": torch.get_num_threads(),
            "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last),
            "nonzero": nonzero_fraction(model),
            "input_shape": tuple(args[0].shape),
        }

    @property
    def loader_pids(self) -> set[int]:
        return {int(p.name) for p in self.pid_dir.iterdir()}

    def run(self, registry: Registry, hardware: Hardware, settings: dict[str, Any]) -> "Probe":
        self.result = engine.run(self.workload, settings, registry, hardware, Budget(steps=STEPS), device="cpu")
        assert self.result.status == "ok", self.result.error
        return self


def knob_baselines(registry: Registry, hardware: Hardware, **overrides: Any) -> dict[str, Any]:
    """Every available knob at its own baseline (not the workload's recipe), then `overrides`.

    Baseline sub-settings that do not apply under the result (momentum under adam) are dropped.
    """
    settings: dict[str, Any] = {}
    for knob in registry.knobs.values():
        if exclusion(knob, hardware) is None:
            settings.update(knob.baseline(hardware))
    settings.update(overrides)
    index = settings_index(registry, hardware)
    return {k: v for k, v in settings.items() if k in overrides or index[k][1].active(settings)}


@pytest.fixture(scope="module")
def baseline(hardware: Hardware, digits_workload: Workload, tmp_path_factory: pytest.TempPathFactory) -> Probe:
    registry = load_registry(entry_points=False)
    settings = resolve_settings(registry, hardware, digits_workload, knob_baselines(registry, hardware))
    return Probe(digits_workload, tmp_path_factory.mktemp("baseline") / "pids").run(registry, hardware, settings)


@dataclasses.dataclass
class Case:
    """One knob under test, with helpers that change only its settings from the baselines."""

    knob: Knob
    registry: Registry
    hardware: Hardware
    workload: Workload
    baseline: Probe
    tmp_path: Path
    plans: list[TrainingPlan]

    @property
    def base_value(self) -> Any:
        return self.knob.baseline(self.hardware)[self.knob.name]

    def settings(self, **overrides: Any) -> dict[str, Any]:
        wanted = knob_baselines(self.registry, self.hardware, **overrides)
        return resolve_settings(self.registry, self.hardware, self.workload, wanted)

    def plan(self, **overrides: Any) -> TrainingPlan:
        """build_plan under these settings; its cleanups run when the test ends."""
        plan = build_plan(self.registry, self.hardware, self.workload, self.settings(**overrides), CPU)
        self.plans.append(plan)
        return plan

    def run(self, **overrides: Any) -> Probe:
        probe = Probe(self.workload, Path(tempfile.mkdtemp(dir=self.tmp_path)))
        return probe.run(self.registry, self.hardware, self.settings(**overrides))


def transformed(plan: TrainingPlan) -> nn.Module:
    """A fresh LeNet put through the plan's model transforms in order, as the engine does."""
    model = LeNet(in_channels=1)
    for _, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
        result = fn(model)
        model = model if result is None else result
    return model


def second_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d) and m.in_channels > 1)


# --- one check per built-in knob ------------------------------------------------------------


def check_batch_size(case: Case) -> None:
    assert case.plan().batch_size == case.base_value
    assert case.baseline.result.samples == STEPS * case.base_value
    other = 16
    assert case.plan(batch_size=other).batch_size == other
    probe = case.run(batch_size=other)
    assert probe.result.samples == STEPS * other
    assert probe.first_forward["input_shape"][0] == other
    assert probe.result.val_loss != case.baseline.result.val_loss


def check_optimizer(case: Case) -> None:
    model = LeNet()
    base = case.plan()
    assert base.optimizer_factory is torch.optim.SGD
    assert base.optimizer_kwargs["momentum"] == 0.0
    adam = case.plan(optimizer="adam", weight_decay=0.01)
    assert adam.optimizer_factory is torch.optim.Adam
    assert adam.optimizer_kwargs["weight_decay"] == 0.01
    assert "momentum" not in adam.optimizer_kwargs
    built = adam.optimizer_factory(model.parameters(), **adam.optimizer_kwargs)
    assert isinstance(built, torch.optim.Adam)
    assert built.defaults["weight_decay"] == 0.01
    probe = case.run(optimizer="adam")
    assert probe.result.val_loss != case.baseline.result.val_loss


def check_learning_rate(case: Case) -> None:
    assert case.plan().optimizer_kwargs["lr"] == case.base_value
    assert case.plan(learning_rate=0.2).optimizer_kwargs["lr"] == 0.2
    probe = case.run(learning_rate=0.2)
    assert probe.result.val_loss != case.baseline.result.val_loss


def check_workers(case: Case) -> None:
    assert case.plan().loader.get("num_workers", 0) == case.base_value == 0
    assert case.baseline.loader_pids == {os.getpid()}
    plan = case.plan(workers=1)
    assert plan.loader["num_workers"] == 1
    assert plan.loader["persistent_workers"] is True
    probe = case.run(workers=1)
    assert probe.loader_pids and os.getpid() not in probe.loader_pids  # a worker loaded the data
    assert probe.result.samples == case.baseline.result.samples


def check_precision(case: Case) -> None:
    assert case.base_value == "fp32"
    assert case.plan().autocast_dtype is None
    assert case.baseline.output_dtypes == {torch.float32}
    if "bf16" not in case.hardware.precisions:
        pytest.skip("bf16 autocast does not run on this CPU")
    assert case.plan(precision="bf16").autocast_dtype is torch.bfloat16
    probe = case.run(precision="bf16")
    assert torch.bfloat16 in probe.output_dtypes
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=0.02)


def check_pruning(case: Case) -> None:
    assert case.base_value == 0.0
    assert case.baseline.first_forward["nonzero"] == 1.0
    assert nonzero_fraction(transformed(case.plan())) == 1.0
    amount = 0.5
    assert nonzero_fraction(transformed(case.plan(pruning=amount))) == pytest.approx(1 - amount, abs=0.01)
    probe = case.run(pruning=amount)
    assert probe.first_forward["nonzero"] == pytest.approx(1 - amount, abs=0.01)


def check_structured_pruning(case: Case) -> None:
    assert case.base_value == 0.0
    assert "structured_pruning" not in case.baseline.result.notes
    reason = exclusion(case.knob, case.hardware)
    if reason is not None:  # torch-pruning is an optional extra
        assert "pip install 'autotune[prune]'" in reason
        return
    assert second_conv(transformed(case.plan())).in_channels == 16
    assert second_conv(transformed(case.plan(structured_pruning=0.5))).in_channels == 8  # LeNet's 16 -> 8
    probe = case.run(structured_pruning=0.5)
    assert probe.first_forward["input_shape"] == case.baseline.first_forward["input_shape"]
    params = probe.result.notes["structured_pruning_counts"]["parameters"]
    assert params[1] < params[0] / 3  # tests/test_levers_pruning.py has the rest


def check_channels_last(case: Case) -> None:
    assert case.base_value is False
    assert not second_conv(transformed(case.plan())).weight.is_contiguous(memory_format=torch.channels_last)
    assert case.baseline.first_forward["channels_last"] is False
    plan = case.plan(channels_last=True)
    assert second_conv(transformed(plan)).weight.is_contiguous(memory_format=torch.channels_last)
    batch = torch.randn(2, 3, 8, 8)
    for fn in plan.input_transforms:
        batch = fn(batch)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    probe = case.run(channels_last=True)
    assert probe.first_forward["channels_last"] is True
    # a systems knob: same numbers, different layout
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=1e-3)


def check_cudnn_benchmark(case: Case) -> None:
    reason = exclusion(case.knob, case.hardware)
    assert isinstance(reason, str) and "CUDA" in reason
    assert "cudnn_benchmark" not in case.baseline.result.settings
    with pytest.raises(UsageError, match="does not apply"):
        case.settings(cudnn_benchmark=True)
    before = torch.backends.cudnn.benchmark
    plan = case.plan(cudnn_benchmark=case.base_value)  # the untuned value is harmless
    assert "cudnn_benchmark" not in plan.notes
    assert torch.backends.cudnn.benchmark == before


def check_torch_compile(case: Case) -> None:
    if exclusion(case.knob, case.hardware):
        pytest.skip(exclusion(case.knob, case.hardware))
    from torch._dynamo.eval_frame import OptimizedModule

    assert case.base_value is False
    assert not isinstance(transformed(case.plan()), OptimizedModule)
    plan = case.plan(torch_compile=True)
    assert max(order for order, _ in plan.model_transforms) == 90  # after every other transform
    assert isinstance(transformed(plan), OptimizedModule)  # compilation itself is lazy: not run here
    assert plan.notes["compile_mode"] == "default"


def check_threads(case: Case) -> None:
    before = torch.get_num_threads()
    assert case.base_value == case.hardware.cpu_count
    assert case.baseline.threads_at_build == case.base_value
    other = 1 if case.hardware.cpu_count > 1 else 2
    plan = case.plan(threads=other)
    assert plan.notes["threads"] == torch.get_num_threads() == other
    for cleanup in plan.cleanups:
        cleanup()
    assert torch.get_num_threads() == before
    probe = case.run(threads=other)
    assert probe.threads_at_build == other
    assert probe.first_forward["threads"] == other
    assert torch.get_num_threads() == before  # restored when the run ended


def check_data_parallel(case: Case) -> None:
    if case.hardware.cpu_count < 2:
        assert exclusion(case.knob, case.hardware) == "needs 2+ CPU cores"
        return
    assert case.base_value == "none"
    assert case.baseline.result.settings["data_parallel"] == "none"
    base = case.plan()
    assert base.processes == 1 and "data_parallel" not in base.notes
    with pytest.raises(UsageError, match="not one of"):
        case.settings(data_parallel="dp")  # DataParallel is CUDA-only
    # ddp on CPU runs (it is accepted) but is not searched by default: start-up costs seconds
    param = case.knob.params(case.hardware)[0]
    assert param.choices == ("none",) and "ddp" in param.accepted
    # the launching pass asks for processes and changes nothing else ...
    launching = case.plan(data_parallel="ddp", data_parallel_processes=2)
    assert launching.processes == 2 and launching.notes["data_parallel"] == "ddp x2"
    assert launching.batch_size == base.batch_size
    assert not [order for order, _ in launching.model_transforms if order == 80]
    # ... and each process's pass takes its share of the batch and of the threads and wraps the
    # model (tests/test_run_distributed.py trains with it, in real processes)
    threads = torch.get_num_threads()
    settings = case.settings(data_parallel="ddp", data_parallel_processes=2)
    in_process = build_plan(case.registry, case.hardware, case.workload, settings, CPU, Rank(1, 2, "gloo"))
    case.plans.append(in_process)
    assert in_process.batch_size == base.batch_size // 2
    assert in_process.notes["batch_per_process"] == base.batch_size // 2
    assert torch.get_num_threads() == max(1, settings["threads"] // 2)
    assert [order for order, _ in in_process.model_transforms] == [80]
    for cleanup in reversed(in_process.cleanups):
        cleanup()
    in_process.cleanups.clear()
    assert torch.get_num_threads() == threads


def check_activation_checkpointing(case: Case) -> None:
    assert case.base_value is False
    assert "activation_checkpointing_blocks" not in case.baseline.result.notes
    assert [order for order, _ in case.plan(activation_checkpointing=True).model_transforms] == [30]
    probe = case.run(activation_checkpointing=True)
    # LeNet's largest Sequential (features, 8 layers) in 3 segments; tests/test_levers_memory.py has the rest
    assert probe.result.notes["activation_checkpointing_blocks"] == ["features[0:3]", "features[3:6]", "features[6:8]"]
    assert probe.result.notes["activation_checkpointing_memory"]["saved_fraction"] > 0
    # the same numbers: its BatchNorm statistics are not updated again by the recomputation
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=1e-6)


def check_micro_batches(case: Case) -> None:
    assert case.base_value == 1
    assert "micro_batches" not in case.baseline.result.notes
    probe = case.run(micro_batches=2)
    batch = case.settings()["batch_size"]
    assert probe.first_forward["input_shape"][0] == batch // 2
    assert probe.result.samples == case.baseline.result.samples  # the batch stays the effective batch
    notes = probe.result.notes
    assert notes["micro_batches"] == 2 and notes["micro_batch_rows"] == batch // 2
    assert "normalises each micro-batch" in notes["micro_batches_batch_norm"]  # LeNet has BatchNorm


def check_lr_schedule(case: Case) -> None:
    assert case.base_value == "constant"
    assert "lr_schedule" not in case.baseline.result.notes
    probe = case.run(lr_schedule="cosine", lr_warmup_fraction=0.0)
    # the second of 2 steps at half the rate; tests/test_levers_training.py checks the sequences
    assert probe.result.notes["lr_schedule"].startswith(f"cosine over {STEPS} optimizer steps, warm-up 0 steps")
    assert probe.result.val_loss != case.baseline.result.val_loss


def check_optimizer_impl(case: Case) -> None:
    assert case.base_value == "default"
    assert not {"foreach", "fused"} & case.plan().optimizer_kwargs.keys()  # torch's own choice
    plan = case.plan(optimizer_impl="foreach")
    built = plan.optimizer_factory(LeNet().parameters(), **plan.optimizer_kwargs)
    assert built.defaults["foreach"] is True and plan.notes["optimizer_impl"] == "foreach SGD"
    probe = case.run(optimizer_impl="fused")
    assert probe.result.notes["optimizer_impl"] == "fused SGD"
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=1e-4)  # the same update


def check_matmul_precision(case: Case) -> None:
    assert case.base_value == "highest"
    assert "matmul_precision" not in case.baseline.result.notes
    reason = exclusion(case.knob, case.hardware)
    if reason is not None:
        assert "bf16" in reason
        with pytest.raises(UsageError, match="does not apply"):
            case.settings(matmul_precision="medium")
        return
    before = torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision
    plan = case.plan(matmul_precision="medium")
    assert (torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision) == ("bf16", "bf16")
    for cleanup in plan.cleanups:
        cleanup()
    plan.cleanups.clear()
    assert (torch.backends.mkldnn.matmul.fp32_precision, torch.backends.mkldnn.conv.fp32_precision) == before
    probe = case.run(matmul_precision="medium")
    assert probe.result.val_loss == pytest.approx(case.baseline.result.val_loss, rel=0.02)


CHECKS: dict[str, Callable[[Case], None]] = {
    "batch_size": check_batch_size,
    "optimizer": check_optimizer,
    "learning_rate": check_learning_rate,
    "workers": check_workers,
    "precision": check_precision,
    "pruning": check_pruning,
    "structured_pruning": check_structured_pruning,
    "channels_last": check_channels_last,
    "cudnn_benchmark": check_cudnn_benchmark,
    "torch_compile": check_torch_compile,
    "threads": check_threads,
    "data_parallel": check_data_parallel,
    "lr_schedule": check_lr_schedule,
    "optimizer_impl": check_optimizer_impl,
    "matmul_precision": check_matmul_precision,
    "activation_checkpointing": check_activation_checkpointing,
    "micro_batches": check_micro_batches,
}


@pytest.fixture
def case_for(
    registry: Registry, hardware: Hardware, digits_workload: Workload, baseline: Probe, tmp_path: Path
) -> Any:
    plans: list[TrainingPlan] = []

    def make(name: str) -> Case:
        return Case(registry.knob(name), registry, hardware, digits_workload, baseline, tmp_path, plans)

    yield make
    for plan in plans:
        for cleanup in plan.cleanups:
            cleanup()


@pytest.mark.parametrize("name", BUILTIN_KNOBS)
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    check = CHECKS.get(name)
    assert check is not None, f"built-in knob '{name}' has no effect test: add one to CHECKS"
    case = case_for(name)
    param = next(p for p in case.knob.params(case.hardware) if p.name == name)
    assert param.coerce(case.base_value) == case.base_value
    check(case)


def test_every_check_names_a_builtin_knob() -> None:
    assert set(CHECKS) == set(BUILTIN_KNOBS)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "rmsprop"])
def test_pruning_sparsity_survives_training(
    registry: Registry, hardware: Hardware, digits_workload: Workload, optimizer: str
) -> None:
    overrides = {"pruning": 0.5, "optimizer": optimizer}
    if optimizer == "adamw":
        overrides["weight_decay"] = 0.05
    settings = resolve_settings(registry, hardware, digits_workload, overrides)
    result = engine.run(digits_workload, settings, registry, hardware, Budget(steps=STEPS), device="cpu")
    assert result.status == "ok", result.error
    assert result.nonzero_fraction == pytest.approx(0.5, abs=0.02)


@pytest.mark.slow
def test_torch_compile_trains_for_real(
    request: pytest.FixtureRequest, registry: Registry, hardware: Hardware, digits_workload: Workload
) -> None:
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("compiles for 20-35 s: select it with -m slow")
    knob = registry.knob("torch_compile")
    if knob.unavailable(hardware) or not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("torch.compile needs a C++ compiler on CPU")
    settings = resolve_settings(registry, hardware, digits_workload, {"torch_compile": True})
    result = engine.run(digits_workload, settings, registry, hardware, Budget(steps=STEPS), device="cpu")
    assert result.status == "ok", result.error
    assert result.settings["torch_compile"] is True
    assert result.val_loss is not None and result.steps == STEPS


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cudnn_benchmark_on_cuda(registry: Registry, digits_workload: Workload) -> None:
    cuda = detect("cuda")
    knob = registry.knob("cudnn_benchmark")
    assert knob.unavailable(cuda) is None
    before = torch.backends.cudnn.benchmark
    settings = resolve_settings(registry, cuda, digits_workload, {"cudnn_benchmark": not before})
    plan = build_plan(registry, cuda, digits_workload, settings, torch.device("cuda"))
    assert torch.backends.cudnn.benchmark is (not before)
    assert plan.notes["cudnn_benchmark"] is (not before)
    for cleanup in plan.cleanups:
        cleanup()
    assert torch.backends.cudnn.benchmark is before
