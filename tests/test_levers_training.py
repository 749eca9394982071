"""The training levers of issue 17, each in real short CPU runs: `lr_schedule`, `optimizer_impl`,
`matmul_precision` and torch_compile's `compile_mode`.

The runs are real and in-process (`engine.run`) on the tiny test workload (an MLP, 8 batches of
32 an epoch), one thread. A probe plugin, written to a temporary file and applied after the
levers, records from inside the run what they did: the learning rate of every optimizer step
and the budget fraction after it, the optimizer torch built and its implementation flags, and
the fp32 matmul flags (and the error of a real fp32 matmul) during the first training forward.
It reports through the run's notes (`result.notes["probe"]`).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from typing import Any

import pytest
import torch

from autotune.budget import Budget
from autotune.errors import Unsupported, UsageError
from autotune.hardware import Hardware
from autotune.knob import exclusion
from autotune.plugins.training.matmul_precision import cpu_bf16_flags
from autotune.registry import Registry, load_registry
from autotune.run import engine
from autotune.run.local import build_plan
from autotune.run.types import RunResult
from autotune.settings import resolve_settings
from tests.workloads_for_tests import tiny

LR = 0.05
STEPS_PER_EPOCH = 8  # tiny: 256 samples in batches of 32
CPU = torch.device("cpu")

PROBE_SOURCE = '''
"""Test probe `lever_probe` (tests/test_levers_training.py): what the levers did in the run."""
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


PROBED = ("matmul", "mkldnn_matmul", "mkldnn_conv")  # the flags the probe reads in the run


def _flags() -> dict[str, str]:
    """Every flag matmul_precision may touch (set_float32_matmul_precision rewrites cuda.matmul
    and mkldnn.matmul too)."""
    backends = torch.backends
    return {"matmul": torch.get_float32_matmul_precision(),
            "mkldnn_matmul": backends.mkldnn.matmul.fp32_precision, "mkldnn_conv": backends.mkldnn.conv.fp32_precision,
            "cuda_matmul": backends.cuda.matmul.fp32_precision, "cudnn_conv": backends.cudnn.conv.fp32_precision}


@pytest.fixture(autouse=True)
def process_state() -> Any:
    """The thread count and fp32 matmul flags as they were: a run refused in `apply` (unsupported)
    never runs the cleanups of the knobs applied before the one that refused (threads)."""
    threads, flags = torch.get_num_threads(), _flags()
    yield
    torch.set_num_threads(threads)
    if _flags() != flags:
        backends = torch.backends
        torch.set_float32_matmul_precision(flags["matmul"])
        backends.mkldnn.matmul.fp32_precision = flags["mkldnn_matmul"]
        backends.mkldnn.conv.fp32_precision = flags["mkldnn_conv"]
        backends.cuda.matmul.fp32_precision = flags["cuda_matmul"]
        backends.cudnn.conv.fp32_precision = flags["cudnn_conv"]


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The built-ins, then the probe."""
    path = tmp_path_factory.mktemp("probe") / "lever_probe.py"
    path.write_text(PROBE_SOURCE)
    return load_registry(entry_points=False, plugin_paths=[str(path)])


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


def lrs(result: RunResult) -> list[float]:
    return [group_lrs[0] for group_lrs in probe(result)["lrs"]]


def assert_same_rates(actual: list[float], expected: list[float]) -> None:
    # 1e-9, not exact: the closed forms here do the arithmetic in another order than the schedules
    # (a CI run saw 5e-12), while a wrong step or fraction is off by 1e-3 or more
    assert len(actual) == len(expected)
    worst = max(abs(a - e) / abs(e) for a, e in zip(actual, expected))
    assert worst <= 1e-9, worst


# --- lr_schedule -----------------------------------------------------------------------------


def test_onecycle_over_a_steps_budget_is_torchs_onecycle(reg: Registry, hardware: Hardware) -> None:
    steps = 20
    result = run(reg, hardware, Budget(steps=steps), lr_schedule="onecycle")

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=LR)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps, cycle_momentum=False)
    expected = []
    for _ in range(steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    assert result.steps == steps
    assert_same_rates(lrs(result), expected)
    assert lrs(result)[0] == pytest.approx(LR / 25) and max(lrs(result)) == pytest.approx(LR, rel=0.02)
    assert result.notes["lr_schedule"] == (
        f"onecycle over {steps} optimizer steps, peak lr {LR:g}, last step at lr {expected[-1]:.3g}")


def _warmed(kind: str, k: int, total: int, warmup: int) -> float:
    """The closed form of the docs: warm-up to LR over `warmup` steps, then the decay to 0."""
    if k < warmup:
        return LR * ((k + 1) / warmup)
    done = (k - warmup) / (total - warmup)
    return LR * (0.5 * (1 + math.cos(math.pi * done)) if kind == "cosine" else 1 - done)


@pytest.mark.parametrize("kind, budget, total, fraction, warmup", [
    ("cosine", Budget(epochs=2), 2 * STEPS_PER_EPOCH, 0.2, 3),  # round(3.2)
    ("linear", Budget(steps=15), 15, 0.1, 2),  # round(1.5): Python rounds half to even
    ("cosine", Budget(steps=12), 12, 0.0, 0),
])
def test_warmed_schedules_follow_the_closed_form(
    reg: Registry, hardware: Hardware, kind: str, budget: Budget, total: int, fraction: float, warmup: int
) -> None:
    result = run(reg, hardware, budget, lr_schedule=kind, lr_warmup_fraction=fraction)
    expected = [_warmed(kind, k, total, warmup) for k in range(total)]
    assert result.steps == total
    assert_same_rates(lrs(result), expected)
    if warmup:
        assert expected[warmup - 1] == LR and expected[0] == LR / warmup
    assert expected[-1] < 0.2 * LR
    described = f"{kind} over {total} optimizer steps, warm-up {warmup} steps, peak lr {LR:g}, last step at lr "
    assert result.notes["lr_schedule"] == described + f"{expected[-1]:.3g}"


def _onecycle_at(fraction: float) -> float:
    low, floor = LR / 25, LR / 25 / 1e4
    if fraction < 0.3:
        return LR + (low - LR) / 2 * (math.cos(math.pi * fraction / 0.3) + 1)
    return floor + (LR - floor) / 2 * (math.cos(math.pi * (fraction - 0.3) / 0.7) + 1)


def _cosine_at(fraction: float, warmup: float = 0.1) -> float:
    if fraction < warmup:
        return LR * max(fraction / warmup, 1e-3)
    return LR * 0.5 * (1 + math.cos(math.pi * (fraction - warmup) / (1 - warmup)))


@pytest.mark.parametrize("kind, curve", [("cosine", _cosine_at), ("onecycle", _onecycle_at)])
def test_a_seconds_budget_follows_the_curve_over_the_fraction_spent(
    reg: Registry, hardware: Hardware, kind: str, curve: Any
) -> None:
    overrides = {"lr_warmup_fraction": 0.1} if kind == "cosine" else {}
    result = run(reg, hardware, Budget(seconds=0.4), lr_schedule=kind, **overrides)
    rates, fractions = lrs(result), probe(result)["fractions"]
    assert len(rates) == result.steps >= 10
    # step 0 at fraction 0; step k+1 at the fraction spent when step k ended (the loop counts a
    # step's time after AFTER_STEP, so the schedule and the probe read the same fraction)
    assert_same_rates(rates, [curve(0.0)] + [curve(f) for f in fractions[:-1]])
    assert max(rates) > 0.9 * LR and rates[-1] < 0.1 * LR
    assert result.notes["lr_schedule"].startswith(f"{kind} over the 0.4 s budget")


def test_constant_is_the_baseline_and_changes_nothing(reg: Registry, hardware: Hardware) -> None:
    knob = reg.knob("lr_schedule")
    assert knob.baseline(hardware)["lr_schedule"] == "constant"
    result = run(reg, hardware, Budget(steps=5))
    assert lrs(result) == [LR] * 5 and "lr_schedule" not in result.notes
    with pytest.raises(UsageError, match="applies only when lr_schedule is cosine or linear"):
        settings_for(reg, hardware, lr_schedule="onecycle", lr_warmup_fraction=0.1)


def test_a_one_step_budget_leaves_onecycle_no_room(reg: Registry, hardware: Hardware) -> None:
    result = run(reg, hardware, Budget(steps=1), lr_schedule="onecycle")
    assert lrs(result) == [LR]
    assert result.notes["lr_schedule"] == f"constant: 1 optimizer step leaves no room for onecycle (peak lr {LR:g})"


# --- optimizer_impl --------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer, cls", [("sgd", "SGD"), ("adamw", "AdamW")])
def test_foreach_and_fused_build_that_optimizer_and_learn_the_same(
    reg: Registry, hardware: Hardware, optimizer: str, cls: str
) -> None:
    budget = Budget(steps=6)
    default = run(reg, hardware, budget, optimizer=optimizer)
    assert (probe(default)["optimizer"], probe(default)["foreach"], probe(default)["fused"]) == (cls, None, None)
    assert "optimizer_impl" not in default.notes
    for impl in ("foreach", "fused"):
        result = run(reg, hardware, budget, optimizer=optimizer, optimizer_impl=impl)
        seen = probe(result)
        assert seen["optimizer"] == cls and seen[impl] is True
        assert seen["fused" if impl == "foreach" else "foreach"] in (None, False)
        assert result.notes["optimizer_impl"] == f"{impl} {cls}"
        # the same update, up to float rounding: a systems knob
        assert result.val_loss == pytest.approx(default.val_loss, rel=1e-5)


def test_fused_rmsprop_does_not_exist_and_says_so(reg: Registry, hardware: Hardware) -> None:
    result = run(reg, hardware, Budget(steps=2), status="unsupported", optimizer="rmsprop", optimizer_impl="fused")
    assert result.error == f"optimizer_impl fused: RMSprop has no fused implementation in torch {torch.__version__}"
    foreach = run(reg, hardware, Budget(steps=2), optimizer="rmsprop", optimizer_impl="foreach")
    assert probe(foreach)["optimizer"] == "RMSprop" and probe(foreach)["foreach"] is True


# --- matmul_precision ------------------------------------------------------------------------


needs_bf16 = pytest.mark.skipif(not cpu_bf16_flags(), reason="this CPU has no bf16 instructions")


@needs_bf16
def test_medium_is_in_effect_during_the_run_and_restored_after(
    reg: Registry, hardware: Hardware, capfd: pytest.CaptureFixture[str]
) -> None:
    before = _flags()
    baseline = run(reg, hardware, Budget(steps=3))
    plain_log = capfd.readouterr().out
    medium = run(reg, hardware, Budget(steps=3), matmul_precision="medium")
    medium_log = capfd.readouterr().out
    assert _flags() == before  # put back when the run ended
    high = run(reg, hardware, Budget(steps=3), matmul_precision="high")  # accepted, not searched on CPU
    assert probe(high)["forward"]["matmul"] == "high" and _flags() == before
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


# --- compile_mode ----------------------------------------------------------------------------


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


# --- on CUDA ---------------------------------------------------------------------------------


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
