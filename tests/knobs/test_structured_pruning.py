"""structured_pruning (plugins/training/structured_pruning.py), applied for real: short CPU runs
through the engine on synthetic-resnet18 (CIFAR-shaped, tiny data), tinylm and digits. A probe knob,
loaded after the built-ins, records at FIT_START the model that trains and the optimizer that trains
it, and at FIT_END the trained model's output shape. Step times are a benchmark's business
(bench/structured_pruning.py), not these tests'.

What needs torch-pruning skips without it; what the knob says without it is tested either way.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from typing import Any, Callable

import pytest
import torch
from torch.utils.data import Subset

from autotune.budget import Budget
from autotune.errors import UsageError
from autotune.hardware import Hardware
from autotune.knob import exclusion
from autotune.registry import Registry, load_registry
from autotune.run import engine
from autotune.run.local import build_plan
from autotune.run.types import RunResult
from autotune.settings import resolve_settings
from autotune.space import load_space
from autotune.workloads import Workload

from knob_case import Case, second_conv, transformed

needs_torch_pruning = pytest.mark.skipif(
    importlib.util.find_spec("torch_pruning") is None,
    reason="structured_pruning needs torch-pruning (pip install 'autotune[prune]')")


PROBE = '''
import torch
from autotune import Event, Knob, Param, hookimpl


class PruningProbe(Knob):
    """Test knob: keeps what the model looked like when training started and ended."""

    name = "pruning_probe"
    help = "test knob: records the trained model's shapes"

    def __init__(self):
        self.records = []

    def params(self, hardware):
        return [Param("pruning_probe", "bool", choices=(True,))]

    def baseline(self, hardware):
        return {"pruning_probe": True}

    def apply(self, settings, plan):
        rec = {}
        self.records.append(rec)

        def fit_start(state):
            params = list(state.model.parameters())
            rec["parameters"] = sum(p.numel() for p in params)
            rec["shapes"] = {name: tuple(p.shape) for name, p in state.model.named_parameters()}
            trained = {id(p) for group in state.optimizer.param_groups for p in group["params"]}
            rec["optimizer_has_the_models_parameters"] = trained == {id(p) for p in params}

        def fit_end(state):
            rec["losses_finite"] = state.loss is not None and torch.isfinite(torch.tensor(state.loss)).item()
            rec["model"] = state.model

        plan.on(Event.FIT_START, fit_start)
        plan.on(Event.FIT_END, fit_end)


@hookimpl
def register_knobs(register):
    register(PruningProbe())
'''


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    path = tmp_path_factory.mktemp("probe") / "pruning_probe.py"
    path.write_text(PROBE)
    return load_registry(entry_points=False, plugin_paths=[str(path)])


@pytest.fixture(scope="module")
def resnet() -> Workload:
    from autotune.plugins.workloads.catalog import synthetic_resnet18

    return synthetic_resnet18(train_size=32, val_size=16)


def train(reg: Registry, hardware: Hardware, workload: Workload, steps: int = 2,
          **overrides: Any) -> tuple[RunResult, dict[str, Any]]:
    settings = resolve_settings(reg, hardware, workload, {"batch_size": 16, "threads": 1, **overrides})
    result = engine.run(workload, settings, reg, hardware, Budget(steps=steps), device="cpu")
    assert result.status == "ok", result.error
    return result, reg.knob("pruning_probe").records[-1]


def output_shape(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[int, ...]:
    model.eval()
    with torch.no_grad():
        return tuple(model(inputs).shape)


@pytest.mark.parametrize("name", ["structured_pruning"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
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
    assert params[1] < params[0] / 3  # the tests below have the rest


@needs_torch_pruning
def test_half_the_channels_of_resnet18_train_with_a_quarter_of_the_parameters(
    reg: Registry, hardware: Hardware, resnet: Workload
) -> None:
    result, rec = train(reg, hardware, resnet, structured_pruning=0.5)
    counts = result.notes["structured_pruning_counts"]
    (params_before, params_after), (macs_before, macs_after) = counts["parameters"], counts["macs_per_sample"]
    assert params_before == sum(p.numel() for p in resnet.model_fn().parameters())
    # both sides of most convolutions halve: about a quarter of the weights and the work remain
    assert params_after == rec["parameters"] < 0.3 * params_before
    assert macs_after < 0.3 * macs_before
    assert rec["shapes"]["conv1.weight"] == (32, 3, 7, 7)
    assert rec["shapes"]["layer4.1.conv2.weight"] == (256, 256, 3, 3)
    assert rec["shapes"]["fc.weight"] == (10, 256)  # the classifier keeps its 10 outputs
    assert rec["optimizer_has_the_models_parameters"]  # pruned before the optimizer was built
    assert rec["losses_finite"] and math.isfinite(result.val_loss)
    assert output_shape(rec["model"], torch.randn(2, 3, 32, 32)) == (2, 10)
    note = result.notes["structured_pruning"]
    assert note.startswith("removed 50.0% of the channels") and "structured_pruning=0 run" in note


@needs_torch_pruning
def test_zero_is_the_untouched_baseline(reg: Registry, hardware: Hardware, resnet: Workload) -> None:
    knob = reg.knob("structured_pruning")
    assert knob.baseline(hardware) == {"structured_pruning": 0.0}
    assert knob.kind == "statistical"
    plan = build_plan(reg, hardware, resnet, resolve_settings(reg, hardware, resnet, {}), torch.device("cpu"))
    for cleanup in plan.cleanups:
        cleanup()
    assert 5 not in [order for order, _ in plan.model_transforms]
    assert not any(key.startswith("structured_pruning") for key in plan.notes)
    searched = next(p for p in load_space("default", reg, hardware).params if p.name == "structured_pruning")
    assert (searched.low, searched.high, searched.step) == (0.0, 0.5, 0.125)


@needs_torch_pruning
def test_a_transformer_loses_mlp_width_only(reg: Registry, hardware: Hardware) -> None:
    from autotune.plugins.workloads.catalog import tinylm

    full = tinylm()
    workload = dataclasses.replace(full, val_data=Subset(full.val_data, range(32)))  # validation is not the point
    before = {name: tuple(p.shape) for name, p in workload.model_fn().named_parameters()}
    result, rec = train(reg, hardware, workload, steps=2, structured_pruning=0.5)
    changed = {name for name, shape in rec["shapes"].items() if shape != before[name]}
    assert changed == {f"blocks.{i}.{part}" for i in (0, 1)
                       for part in ("mlp.0.weight", "mlp.0.bias", "mlp.2.weight")}
    assert rec["shapes"]["blocks.0.mlp.0.weight"] == (128, 64)  # hidden width 256 -> 128
    assert rec["shapes"]["blocks.0.mlp.2.weight"] == (64, 128)
    assert rec["model"].head.weight is rec["model"].tokens.weight  # still tied
    assert "attention and residual width kept" in result.notes["structured_pruning"]
    assert rec["losses_finite"]
    ids = torch.zeros(2, 64, dtype=torch.long)
    assert output_shape(rec["model"], ids) == (2, 64, before["tokens.weight"][0])


@needs_torch_pruning
def test_unstructured_pruning_masks_the_pruned_model(
    reg: Registry, hardware: Hardware, digits_workload: Workload
) -> None:
    result, rec = train(reg, hardware, digits_workload, structured_pruning=0.5, pruning=0.5)
    counts = result.notes["structured_pruning_counts"]
    assert rec["parameters"] == counts["parameters"][1] < counts["parameters"][0] / 3
    # `pruning` (order 10) masked the weights that trained, after structured_pruning (5) shrank them
    assert result.nonzero_fraction == pytest.approx(0.5, abs=0.02)


def test_without_torch_pruning_the_knob_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, hardware: Hardware, digits_workload: Workload
) -> None:
    registry = load_registry(entry_points=False)
    knob = registry.knob("structured_pruning")
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # how Python blocks an import
    reason = exclusion(knob, hardware)
    assert reason == "needs torch-pruning (pip install 'autotune[prune]')"
    assert load_space("default", registry, hardware).excluded["structured_pruning"] == reason
    with pytest.raises(UsageError, match=r"structured_pruning.*pip install 'autotune\[prune\]'"):
        resolve_settings(registry, hardware, digits_workload, {"structured_pruning": 0.5})
