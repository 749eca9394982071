"""Short real runs for the training levers (lr_schedule, optimizer_impl, matmul_precision,
torch_compile's compile_mode): in-process (`engine.run`) on the tiny test workload (an MLP, 8
batches of 32 an epoch), one thread. A probe plugin (`PROBE_SOURCE`, loaded after the levers by the
`reg` fixture of tests/knobs/conftest.py) records from inside the run what they did: the learning
rate of every optimizer step and the budget fraction after it, the optimizer torch built and its
implementation flags, and the fp32 matmul flags (and the error of a real fp32 matmul) during the
first training forward. It reports through the run's notes (`result.notes["probe"]`).
"""

from __future__ import annotations

from typing import Any

import torch

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.registry import Registry
from autotune.run import engine
from autotune.run.types import RunResult
from autotune.settings import resolve_settings

from workloads_for_tests import tiny

LR = 0.05
STEPS_PER_EPOCH = 8  # tiny: 256 samples in batches of 32


PROBE_SOURCE = '''
"""Test probe `lever_probe` (tests/knobs/lever_runs.py): what the levers did in the run."""
import functools

import torch

from autotune import Event, Knob, Param, hookimpl

GENERATOR = torch.Generator().manual_seed(0)
A = torch.randn(256, 256, generator=GENERATOR)
B = torch.randn(256, 256, generator=GENERATOR)
EXACT = A.double() @ B.double()


def flags():
    return {"matmul": torch.get_float32_matmul_precision(),
            "mkldnn_matmul": torch.backends.mkldnn.matmul.fp32_precision,
            "mkldnn_conv": torch.backends.mkldnn.conv.fp32_precision}


class LeverProbe(Knob):
    name = "lever_probe"
    help = "test knob: records what the levers did"
    after = ("lr_schedule", "optimizer_impl", "matmul_precision", "torch_compile")

    def params(self, hardware):
        return [Param("lever_probe", "bool")]

    def baseline(self, hardware):
        return {"lever_probe": True}

    def apply(self, settings, plan):
        rec = {"lrs": [], "fractions": [], "forward": None}
        plan.notes["probe"] = rec

        def hook(model):
            def forward(module, args, output):
                if module.training and rec["forward"] is None:
                    # oneDNN prints each primitive it runs, with its attributes (attr-fpmath)
                    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                        product = A @ B
                    error = (product.double() - EXACT).abs().max() / EXACT.abs().max()
                    rec["forward"] = {**flags(), "matmul_error": float(error)}

            model.register_forward_hook(forward)

        def fit_start(state):
            optimizer = state.optimizer
            rec["optimizer"] = type(optimizer).__name__
            rec["foreach"] = optimizer.defaults.get("foreach")
            rec["fused"] = optimizer.defaults.get("fused")
            rec["model"] = type(state.model).__name__
            original = optimizer.step

            @functools.wraps(original)
            def step(*args, **kwargs):
                rec["lrs"].append([group["lr"] for group in optimizer.param_groups])
                return original(*args, **kwargs)

            optimizer.step = step

        plan.transform_model(hook, order=85)  # on the model itself, before torch.compile (90)
        plan.on(Event.FIT_START, fit_start)
        plan.on(Event.AFTER_STEP, lambda state, loss: rec["fractions"].append(state.fraction))


@hookimpl
def register_knobs(register):
    register(LeverProbe())
'''


def matmul_flags() -> dict[str, str]:
    """Every flag matmul_precision may touch (set_float32_matmul_precision rewrites cuda.matmul
    and mkldnn.matmul too)."""
    backends = torch.backends
    return {"matmul": torch.get_float32_matmul_precision(),
            "mkldnn_matmul": backends.mkldnn.matmul.fp32_precision, "mkldnn_conv": backends.mkldnn.conv.fp32_precision,
            "cuda_matmul": backends.cuda.matmul.fp32_precision, "cudnn_conv": backends.cudnn.conv.fp32_precision}


def settings_for(reg: Registry, hardware: Hardware, **overrides: Any) -> dict[str, Any]:
    wanted = {"threads": 1, "batch_size": 32, "optimizer": "sgd", "learning_rate": LR, **overrides}
    if wanted["optimizer"] in ("sgd", "rmsprop"):
        wanted.setdefault("momentum", 0.0)
    return resolve_settings(reg, hardware, tiny(), wanted)


def run(reg: Registry, hardware: Hardware, budget: Budget, status: str = "ok", **overrides: Any) -> RunResult:
    result = engine.run(tiny(), settings_for(reg, hardware, **overrides), reg, hardware, budget, device="cpu")
    assert result.status == status, result.error
    return result


def probe(result: RunResult) -> dict[str, Any]:
    return result.notes["probe"]
