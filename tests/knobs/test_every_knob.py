"""What holds across the built-in knobs: each has its file here, named after it, with the test that
its value changes a run; and the training levers run together on CUDA (`gpu`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from autotune.budget import Budget
from autotune.registry import Registry
from autotune.run import engine
from autotune.run.local import build_plan
from autotune.settings import resolve_settings

from knob_case import BUILTIN_KNOBS
from lever_runs import probe
from workloads_for_tests import tiny

HERE = Path(__file__).parent


def effect_tests() -> dict[str, str]:
    """{knob: file} for each `test_knob_changes_the_run` here, by the knob its parametrize names."""
    found = {}
    for path in sorted(HERE.glob("test_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name == "test_knob_changes_the_run":
                (mark,) = [d for d in node.decorator_list
                           if isinstance(d, ast.Call) and ast.unparse(d.func) == "pytest.mark.parametrize"]
                (knob,) = ast.literal_eval(mark.args[1])
                assert knob not in found, f"{knob}: tested in {found[knob]} and {path.name}"
                found[knob] = path.name
    return found


def test_every_check_names_a_builtin_knob() -> None:
    """Every built-in knob has tests/knobs/test_<knob>.py with the test that its value changes a run
    (add one with a new knob), and no such test names a knob that is not built in."""
    found = effect_tests()
    missing, extra = set(BUILTIN_KNOBS) - set(found), set(found) - set(BUILTIN_KNOBS)
    assert not missing and not extra, f"no test_knob_changes_the_run for {missing}; one for {extra}, not built in"
    assert {knob: file for knob, file in found.items() if file != f"test_{knob}.py"} == {}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_levers_on_cuda(reg: Registry) -> None:
    from autotune.hardware import detect

    cuda = detect("cuda")
    before = torch.backends.cuda.matmul.fp32_precision
    result = engine.run(tiny(), resolve_settings(reg, cuda, tiny(), {
        "batch_size": 32, "optimizer": "adamw", "optimizer_impl": "fused", "matmul_precision": "high",
        "lr_schedule": "cosine", "lr_warmup_fraction": 0.2,
    }), reg, cuda, Budget(steps=10), device="cuda")
    assert result.status == "ok", result.error
    assert probe(result)["optimizer"] == "AdamW" and probe(result)["fused"] is True
    assert probe(result)["forward"]["matmul"] == "high"
    assert result.notes["matmul_precision"] == "high: TF32 fp32 matmuls (cuBLAS)"
    assert torch.backends.cuda.matmul.fp32_precision == before
    plan = build_plan(reg, cuda, tiny(), resolve_settings(reg, cuda, tiny(), {
        "torch_compile": True, "compile_mode": "reduce-overhead"}), torch.device("cuda"))
    try:
        model = tiny().model_fn().cuda()
        for _, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
            transformed = fn(model)
            model = model if transformed is None else transformed
        assert model.get_compiler_config()["triton.cudagraphs"] is True
    finally:
        for cleanup in plan.cleanups:
            cleanup()
