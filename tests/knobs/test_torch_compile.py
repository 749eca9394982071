"""torch_compile and its compile_mode: the model compiled after every other transform, the mode
reaching inductor's settings; compiling and training for real is `slow`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from typing import Any, Callable

import pytest

from autotune.budget import Budget
from autotune.errors import Unsupported, UsageError
from autotune.hardware import Hardware
from autotune.knob import exclusion
from autotune.registry import Registry
from autotune.run import engine
from autotune.run.local import build_plan
from autotune.settings import resolve_settings
from autotune.workloads import Workload

from knob_case import CPU, STEPS, Case, transformed
from lever_runs import probe, run, settings_for
from workloads_for_tests import tiny


@pytest.mark.parametrize("name", ["torch_compile"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
    if exclusion(case.knob, case.hardware):
        pytest.skip(exclusion(case.knob, case.hardware))
    from torch._dynamo.eval_frame import OptimizedModule

    assert case.base_value is False
    assert not isinstance(transformed(case.plan()), OptimizedModule)
    plan = case.plan(torch_compile=True)
    assert max(order for order, _ in plan.model_transforms) == 90  # after every other transform
    assert isinstance(transformed(plan), OptimizedModule)  # compilation itself is lazy: not run here
    assert plan.notes["compile_mode"] == "default"


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


needs_compiler = pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                    reason="inductor needs a C++ compiler")


def compiled_by(reg: Registry, hardware: Hardware, **overrides: Any) -> tuple[Any, dict[str, Any]]:
    """The plan's model transforms applied to a fresh model (compilation itself is lazy: nothing
    compiles here), and the plan's notes."""
    plan = build_plan(reg, hardware, tiny(), settings_for(reg, hardware, **overrides), CPU)
    try:
        model = tiny().model_fn()
        for _, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
            transformed = fn(model)
            model = model if transformed is None else transformed
        return model, plan.notes
    finally:
        for cleanup in plan.cleanups:
            cleanup()


@needs_compiler
@pytest.mark.parametrize("mode, max_autotune", [("default", False), ("max-autotune-no-cudagraphs", True)])
def test_the_compile_mode_reaches_torch_compile(
    reg: Registry, hardware: Hardware, mode: str, max_autotune: bool
) -> None:
    model, notes = compiled_by(reg, hardware, torch_compile=True, compile_mode=mode)
    assert type(model).__name__ == "OptimizedModule"
    config = model.get_compiler_config()  # inductor's settings as torch.compile(mode=...) set them
    assert config["max_autotune"] is max_autotune and config["triton.cudagraphs"] is False
    assert notes["compile_mode"] == mode


def test_compile_mode_defaults_and_cuda_graphs(reg: Registry, hardware: Hardware) -> None:
    knob = reg.knob("torch_compile")
    assert knob.baseline(hardware) == {"torch_compile": False, "compile_mode": "default"}
    mode = knob.params(hardware)[1]
    assert mode.choices == ("default", "max-autotune-no-cudagraphs") and "reduce-overhead" in mode.accepted
    cuda = dataclasses.replace(hardware, device_type="cuda")
    assert "reduce-overhead" in knob.params(cuda)[1].choices
    with pytest.raises(UsageError, match="applies only when torch_compile is"):
        settings_for(reg, hardware, compile_mode="default")  # torch_compile stays False
    if exclusion(knob, hardware) is None:
        refusal = r"^compile_mode reduce-overhead needs CUDA \(CUDA graphs\); this run is on cpu$"
        with pytest.raises(Unsupported, match=refusal):
            compiled_by(reg, hardware, torch_compile=True, compile_mode="reduce-overhead")
    model, notes = compiled_by(reg, hardware)
    assert type(model).__name__ != "OptimizedModule" and "compile_mode" not in notes


@pytest.mark.slow
@needs_compiler
def test_max_autotune_no_cudagraphs_trains_for_real(
    request: pytest.FixtureRequest, reg: Registry, hardware: Hardware
) -> None:
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("compiles for tens of seconds: select it with -m slow")
    result = run(reg, hardware, Budget(steps=3), torch_compile=True, compile_mode="max-autotune-no-cudagraphs")
    assert probe(result)["model"] == "OptimizedModule"
    assert result.notes["compile_mode"] == "max-autotune-no-cudagraphs" and math.isfinite(result.val_loss)
