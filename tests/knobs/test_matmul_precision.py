"""matmul_precision: reduced-precision fp32 matmuls (bf16 through oneDNN on CPU), in effect during a
run and restored after it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest
import torch

from autotune.budget import Budget
from autotune.errors import UsageError
from autotune.hardware import Hardware
from autotune.knob import exclusion
from autotune.plugins.training.matmul_precision import cpu_bf16_flags
from autotune.registry import Registry

from knob_case import Case
from lever_runs import matmul_flags, probe, run

PROBED = ("matmul", "mkldnn_matmul", "mkldnn_conv")  # the flags the probe reads in the run


@pytest.mark.parametrize("name", ["matmul_precision"])
def test_knob_changes_the_run(name: str, case_for: Callable[[str], Case]) -> None:
    """Its baseline (the shared run) and another value, each visible in a run (knob_case.py)."""
    case = case_for(name)
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


needs_bf16 = pytest.mark.skipif(not cpu_bf16_flags(), reason="this CPU has no bf16 instructions")


@needs_bf16
def test_medium_is_in_effect_during_the_run_and_restored_after(
    reg: Registry, hardware: Hardware, capfd: pytest.CaptureFixture[str]
) -> None:
    before = matmul_flags()
    baseline = run(reg, hardware, Budget(steps=3))
    plain_log = capfd.readouterr().out
    medium = run(reg, hardware, Budget(steps=3), matmul_precision="medium")
    medium_log = capfd.readouterr().out
    assert matmul_flags() == before  # put back when the run ended
    high = run(reg, hardware, Budget(steps=3), matmul_precision="high")  # accepted, not searched on CPU
    assert probe(high)["forward"]["matmul"] == "high" and matmul_flags() == before
    assert high.notes["matmul_precision"] == "high: no TF32 on CPU, fp32 matmuls run as at highest"

    plain, reduced = probe(baseline)["forward"], probe(medium)["forward"]
    assert {k: plain[k] for k in PROBED} == {k: before[k] for k in PROBED}
    assert {k: reduced[k] for k in PROBED} == {"matmul": "medium", "mkldnn_matmul": "bf16", "mkldnn_conv": "bf16"}
    # a real fp32 matmul inside the run went to oneDNN with bf16 allowed; whether oneDNN then
    # multiplies in bf16 is its choice per CPU (on an AMD EPYC with avx512_bf16 but no AMX,
    # oneDNN 3.12 keeps an fp32 kernel), so the error is bounded, not asserted to grow
    assert "attr-fpmath:bf16" not in plain_log
    assert any("matmul" in line and "attr-fpmath:bf16" in line for line in medium_log.splitlines())
    assert plain["matmul_error"] < 1e-5 and reduced["matmul_error"] < 2e-2
    assert "matmul_precision" not in baseline.notes
    assert medium.notes["matmul_precision"].startswith("medium: fp32 matmuls and convolutions may use bf16 (oneDNN")
    assert medium.val_loss == pytest.approx(baseline.val_loss, rel=0.02)


def test_matmul_precision_applies_only_with_a_reduced_mode(reg: Registry, hardware: Hardware) -> None:
    knob = reg.knob("matmul_precision")
    assert knob.baseline(hardware) == {"matmul_precision": "highest"}
    if cpu_bf16_flags():
        assert exclusion(knob, hardware) is None
        assert knob.params(hardware)[0].choices == ("highest", "medium")
    else:
        assert "no reduced-precision fp32 matmul on this CPU" in exclusion(knob, hardware)
    mps = dataclasses.replace(hardware, device_type="mps", precisions=("fp32",))
    assert exclusion(knob, mps) == "torch has no reduced-precision fp32 matmul on mps"
