"""Three plugin knobs that act during training through loop events, each checked for real:
`doc_lr_schedule` (tests/plugin_files/lr_schedule.py), `accumulation_steps`
(grad_accumulation.py) and `ema` (ema.py).

The runs are real and in-process (`engine.run`) on a small MLP (no BatchNorm, no dropout), a
few steps each. A probe plugin, written to a temporary file and loaded after the knobs under
test, records from inside the loop what happened: the learning rate of every optimizer step,
the weights after every step and around every validation, the model's training forwards, the
GradScaler, DDP's `no_sync` calls. Each process writes it to `$LOOP_PROBE_DIR/rank<r>.pt` when
the run ends, so data-parallel runs (two processes, gloo) report the same way.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from autotune.budget import Budget
from autotune.hardware import Hardware
from autotune.registry import Registry, load_registry
from autotune.run import engine
from autotune.run.types import RunOptions, RunResult
from autotune.settings import resolve_settings
from autotune.workloads import Workload, load_workload

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugin_files"
LR_SCHEDULE = str(PLUGINS / "lr_schedule.py")
GRAD_ACCUMULATION = str(PLUGINS / "grad_accumulation.py")
EMA = str(PLUGINS / "ema.py")
WORKLOAD = "tests.test_loop_knobs:mlp"  # by name, so data-parallel processes can build it again

TRAIN_SIZE, VAL_SIZE, FEATURES, CLASSES = 200, 64, 8, 3  # 200 = 6 batches of 32 and one of 8
LR = 0.05

needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="ddp on CPU needs 2+ cores")


# --- the workload: a small MLP on a fixed random classification task ------------------------


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _data(n: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, FEATURES, generator=generator)
    mix = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99))
    return TensorDataset(inputs, (inputs @ mix).argmax(dim=1))


def mlp() -> Workload:
    """The workload of these tests (module level so `tests.test_loop_knobs:mlp` loads by name)."""
    return Workload(name="loop-mlp", model_fn=MLP, train_data=_data(TRAIN_SIZE, 0),
                    val_data=_data(VAL_SIZE, 1), input_shape=(FEATURES,))


# --- the probe -------------------------------------------------------------------------------

PROBE_SOURCE = '''
"""Test probe `loop_probe`: records what happened inside the loop (see tests/test_loop_knobs.py)."""
import functools
import os
import torch
from autotune import Event, Knob, Param, hookimpl


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


class LoopProbe(Knob):
    name = "loop_probe"
    help = "test knob: records the loop"
    # after the knobs under test: its handlers run after theirs (AFTER_STEP after the scheduler
    # stepped, BEFORE_EVAL after the EMA was swapped in, FIT_END after the EMA's)
    after = ("precision", "data_parallel", "doc_lr_schedule", "accumulation_steps", "ema")

    def params(self, hardware):
        return [Param("loop_probe", "categorical", choices=("record", "scaler"))]

    def baseline(self, hardware):
        return {"loop_probe": "record"}

    def apply(self, settings, plan):
        if plan.rank is None and plan.processes > 1:
            return  # the launcher's pass of a data-parallel run: the processes record
        if settings["loop_probe"] == "scaler":
            plan.grad_scaler = True  # a GradScaler even on CPU
        rank = plan.rank.rank if plan.rank is not None else 0
        rec = {"rank": rank, "lrs": [], "optimizer_steps": 0, "forwards": [], "output_dtypes": [],
               "no_sync_calls": 0, "after_step": [], "before_eval": [], "after_eval": []}

        def capture(model):
            rec["wrapper"] = type(model).__name__
            rec["has_no_sync"] = hasattr(model, "no_sync")
            if hasattr(model, "no_sync"):
                original = model.no_sync

                def counting_no_sync():
                    rec["no_sync_calls"] += 1
                    return original()

                model.no_sync = counting_no_sync

            def forward_hook(module, args, output):
                if module.training:
                    rec["forwards"].append(int(args[0].shape[0]))
                    rec["output_dtypes"].append(str(output.dtype))

            model.register_forward_hook(forward_hook)

        def fit_start(state):
            rec["total_steps"] = state.total_steps
            rec["budget_seconds"] = state.budget_seconds
            rec["steps_per_epoch"] = state.steps_per_epoch
            rec["initial"] = weights(state.model)
            rec["scaler_enabled"] = bool(state.scaler.is_enabled())
            optimizer = state.optimizer
            original = optimizer.step

            @functools.wraps(original)  # keeps what an lr scheduler marked on it
            def counting_step(*args, **kwargs):
                rec["optimizer_steps"] += 1
                rec["lrs"].append([group["lr"] for group in optimizer.param_groups])
                return original(*args, **kwargs)

            optimizer.step = counting_step

        def after_step(state, loss):
            rec["after_step"].append({"step": state.step, "fraction": state.fraction, "loss": loss,
                                      "samples": state.samples, "weights": weights(state.model)})

        def before_eval(state):
            rec["before_eval"].append({"step": state.step, "weights": weights(state.model)})

        def after_eval(state, metrics):
            rec["after_eval"].append({"step": state.step, "metrics": dict(metrics),
                                      "weights": weights(state.model)})

        def fit_end(state):
            rec["final"] = weights(state.model)
            rec["scale"] = float(state.scaler.get_scale()) if state.scaler.is_enabled() else None

        def write():
            torch.save(rec, os.path.join(os.environ["LOOP_PROBE_DIR"], f"rank{rank}.pt"))

        plan.transform_model(capture, order=85)  # after a DDP wrap (80)
        plan.on(Event.FIT_START, fit_start)
        plan.on(Event.AFTER_STEP, after_step)
        plan.on(Event.BEFORE_EVAL, before_eval)
        plan.on(Event.AFTER_EVAL, after_eval)
        plan.on(Event.FIT_END, fit_end)
        plan.on_cleanup(write)


@hookimpl
def register_knobs(register):
    register(LoopProbe())
'''


@pytest.fixture(scope="module")
def probe_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("probe") / "loop_probe.py"
    path.write_text(PROBE_SOURCE)
    return str(path)


@pytest.fixture(scope="module")
def reg(probe_path: str) -> Registry:
    """Built-ins, the three knobs under test, then the probe."""
    return load_registry(entry_points=False, plugin_paths=[LR_SCHEDULE, GRAD_ACCUMULATION, EMA, probe_path])


@pytest.fixture
def by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tests.test_loop_knobs:mlp` importable here and in the processes a run starts."""
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))


class Runner:
    def __init__(self, reg: Registry, hardware: Hardware, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reg, self.hardware, self.tmp_path, self.monkeypatch = reg, hardware, tmp_path, monkeypatch
        self.count = 0

    def __call__(self, budget: Budget, workload: Workload | None = None, ranks: int = 1,
                 options: RunOptions | None = None, **overrides: Any) -> tuple[RunResult, list[dict[str, Any]]]:
        """Train under these settings; the result and each process's probe record."""
        self.count += 1
        out = self.tmp_path / f"run{self.count}"
        out.mkdir()
        self.monkeypatch.setenv("LOOP_PROBE_DIR", str(out))
        workload = workload or mlp()
        wanted = {"threads": 1, "batch_size": 32, "optimizer": "sgd", "momentum": 0.0,
                  "learning_rate": LR, **overrides}
        settings = resolve_settings(self.reg, self.hardware, workload, wanted)
        result = engine.run(workload, settings, self.reg, self.hardware, budget, device="cpu",
                            options=options or RunOptions())
        assert result.status == "ok", result.error
        records = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(ranks)]
        return result, records


@pytest.fixture
def run(reg: Registry, hardware: Hardware, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    return Runner(reg, hardware, tmp_path, monkeypatch)


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b))


def lrs_of(record: dict[str, Any]) -> list[float]:
    return [group_lrs[0] for group_lrs in record["lrs"]]


# --- doc_lr_schedule -------------------------------------------------------------------------


def test_onecycle_follows_torch_onecycle_for_the_steps_budget(run: Runner) -> None:
    steps = 20
    result, (record,) = run(Budget(steps=steps), doc_lr_schedule="onecycle")
    assert record["total_steps"] == steps

    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=LR)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LR, total_steps=steps, cycle_momentum=False)
    expected = []
    for _ in range(steps):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()

    assert len(record["lrs"]) == record["optimizer_steps"] == result.steps == steps
    assert lrs_of(record) == pytest.approx(expected, rel=1e-12, abs=0)
    assert lrs_of(record)[0] == pytest.approx(LR / 25)  # torch's div_factor: it is a real cycle
    assert max(lrs_of(record)) == pytest.approx(LR, rel=0.05)
    assert result.notes["doc_lr_schedule"] == f"onecycle over {steps} optimizer steps (peak lr {LR:g})"


def test_cosine_warmup_follows_the_closed_form_for_an_epochs_budget(run: Runner) -> None:
    per_epoch = math.ceil(TRAIN_SIZE / 32)  # 7: the short last batch is a step too
    total, warmup = 2 * per_epoch, round(0.2 * 2 * per_epoch)  # 14 steps, 3 of warm-up
    result, (record,) = run(Budget(epochs=2), doc_lr_schedule="cosine_warmup", doc_lr_warmup_fraction=0.2)
    assert record["steps_per_epoch"] == per_epoch and record["total_steps"] == total == result.steps

    expected = [LR * (k + 1) / warmup if k < warmup
                else LR * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup)))
                for k in range(total)]
    assert lrs_of(record) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert expected[warmup - 1] == pytest.approx(LR) and expected[-1] < 0.03 * LR
    assert result.notes["doc_lr_schedule"] == f"cosine_warmup over {total} optimizer steps, warm-up {warmup} steps (peak lr {LR:g})"


def _onecycle(fraction: float) -> float:
    """torch's OneCycleLR (two phases, cosine, pct_start 0.3) over a fraction of the budget."""
    low, floor = LR / 25, LR / 25 / 1e4
    if fraction < 0.3:
        return LR + (low - LR) / 2 * (math.cos(math.pi * fraction / 0.3) + 1)
    return floor + (LR - floor) / 2 * (math.cos(math.pi * (fraction - 0.3) / 0.7) + 1)


def _cosine(fraction: float) -> float:
    return LR * 0.5 * (1 + math.cos(math.pi * fraction))


@pytest.mark.parametrize("schedule, curve, first", [("cosine_warmup", _cosine, LR), ("onecycle", _onecycle, LR / 25)])
def test_a_seconds_budget_schedules_over_the_fraction_spent(run: Runner, schedule: str, curve: Any, first: float) -> None:
    result, (record,) = run(Budget(seconds=0.6), doc_lr_schedule=schedule,
                            **({"doc_lr_warmup_fraction": 0.0} if schedule == "cosine_warmup" else {}))
    assert record["total_steps"] is None and record["budget_seconds"] == 0.6
    lrs, after = lrs_of(record), record["after_step"]
    assert len(lrs) == result.steps >= 10
    assert lrs[0] == pytest.approx(first)  # set at FIT_START, at fraction 0
    # step k+1 runs at the rate set after step k from the fraction spent then (the probe reads
    # the fraction a moment later, so allow what a few microseconds of a 0.6 s budget move it)
    for lr, point in zip(lrs[1:], after):
        assert lr == pytest.approx(curve(min(point["fraction"], 1.0)), abs=0.01 * LR)
    assert lrs[-1] < 0.1 * LR and max(lrs) > 0.9 * LR
    assert result.notes["doc_lr_schedule"] == f"{schedule} over the seconds budget (peak lr {LR:g})"


def test_no_schedule_keeps_the_learning_rate(run: Runner) -> None:
    result, (record,) = run(Budget(steps=5))
    assert lrs_of(record) == [LR] * 5
    assert "doc_lr_schedule" not in result.notes and "lr_schedule" not in result.notes


# --- accumulation_steps ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32_reference(reg: Registry, hardware: Hardware, tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, dict[str, Any]]:
    """Two epochs (14 steps, the last of each epoch a short batch of 8) without accumulation."""
    with pytest.MonkeyPatch.context() as mp:
        runner = Runner(reg, hardware, tmp_path_factory.mktemp("reference"), mp)
        result, (record,) = runner(Budget(steps=14))
    return result, record


@pytest.mark.parametrize("parts, splits", [(4, [[8, 8, 8, 8], [2, 2, 2, 2]]), (3, [[11, 11, 10], [3, 3, 2]])])
def test_accumulation_learns_what_one_batch_learns_fp32(
    run: Runner, fp32_reference: tuple[RunResult, dict[str, Any]], parts: int, splits: list[list[int]]
) -> None:
    reference, ref = fp32_reference
    result, (record,) = run(Budget(steps=14), accumulation_steps=parts)

    assert ref["forwards"] == [32] * 6 + [8] + [32] * 6 + [8]  # the reference: one forward a batch
    assert record["forwards"] == (splits[0] * 6 + splits[1]) * 2  # here: the micro-batches
    # the same weights after every step (unequal micro-batches weighted by their share: 11/32)
    assert max_difference(record["final"], ref["final"]) < 1e-6
    for mine, theirs in zip(record["after_step"], ref["after_step"], strict=True):
        assert max_difference(mine["weights"], theirs["weights"]) < 1e-6
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-6)  # the whole batch's loss
    assert result.val_loss == pytest.approx(reference.val_loss, abs=1e-6)
    # --budget-steps counts optimizer steps, samples (and so throughput) count whole batches
    assert result.steps == record["optimizer_steps"] == 14 == len(record["after_step"])
    assert result.samples == reference.samples == 2 * TRAIN_SIZE
    assert [point["samples"] for point in record["after_step"]] == [point["samples"] for point in ref["after_step"]]
    assert result.throughput and result.throughput > 0
    assert result.notes["accumulation_steps"] == parts
    assert result.notes["accumulation_micro_batches"] == splits
    assert result.notes["accumulation_no_sync"] is False and result.notes["accumulation_unsynced_micro_batches"] == 0
    assert "accumulation_steps" not in reference.notes  # 1: the knob does nothing, says nothing


def test_accumulation_under_fp16_autocast_and_a_grad_scaler(run: Runner) -> None:
    budget = Budget(steps=8)
    plain, (ref,) = run(budget, precision="fp16", loop_probe="scaler")
    accumulated, (record,) = run(budget, precision="fp16", loop_probe="scaler", accumulation_steps=4)
    fp32, (full,) = run(budget)
    for rec in (ref, record):
        assert rec["scaler_enabled"] and set(rec["output_dtypes"]) == {"torch.float16"}
        assert rec["optimizer_steps"] == 8 and rec["scale"] == 65536.0  # no step skipped for inf
    assert record["forwards"] == [8] * 24 + [2] * 4 + [8] * 4  # step 7: the epoch's short batch of 8
    # fp16 rounds every matmul's output to 11 significant bits (~5e-4 relative): the weight
    # gradient of each micro-batch is rounded on its own before the four are summed in fp32,
    # instead of once for the whole batch, so the runs agree to fp16's precision, not fp32's.
    # Measured: 8e-6 apart after 8 steps, where fp16 and fp32 runs are 1e-4 apart and the weights
    # moved 4e-2; a micro-batch's gradient not scaled by its share moves them by a whole step.
    difference = max_difference(record["final"], ref["final"])
    assert difference < 5e-5, difference
    assert max_difference(ref["final"], full["final"]) < 1e-3  # fp16 itself trains like fp32
    assert max_difference(ref["final"], ref["initial"]) > 1e-2  # and it did train
    assert accumulated.steps == plain.steps == 8 and accumulated.samples == plain.samples == TRAIN_SIZE + 32


@needs_two_cores
def test_accumulation_under_ddp_skips_the_all_reduce_of_intermediate_micro_batches(run: Runner, reg: Registry, by_name: None) -> None:
    workload = load_workload(WORKLOAD, reg)
    ddp = {"data_parallel": "ddp", "data_parallel_processes": 2, "batch_size": 64}
    budget = Budget(steps=4)  # one epoch: each process's shard of 100 is 3 batches of 32 and one of 4
    plain, ref = run(budget, workload=workload, ranks=2, **ddp)
    accumulated, records = run(budget, workload=workload, ranks=2, accumulation_steps=4, **ddp)

    for rec in ref + records:
        assert rec["wrapper"] == "DistributedDataParallel" and rec["has_no_sync"]
        assert rec["optimizer_steps"] == 4
    assert [rec["forwards"] for rec in ref] == [[32, 32, 32, 4]] * 2
    assert [rec["no_sync_calls"] for rec in ref] == [0, 0]
    # 4 micro-batches a step, the first 3 of each under no_sync
    assert [rec["forwards"] for rec in records] == [[8] * 12 + [1] * 4] * 2
    assert [rec["no_sync_calls"] for rec in records] == [4 * 3] * 2
    # the processes stayed in step, and learnt what the unaccumulated processes learnt
    assert max_difference(records[0]["final"], records[1]["final"]) == 0
    assert max_difference(records[0]["final"], ref[0]["final"]) < 1e-6
    assert max_difference(records[0]["final"], records[0]["initial"]) > 1e-3
    assert accumulated.steps == plain.steps == 4
    assert accumulated.samples == plain.samples == 2 * (3 * 32 + 4)  # both processes' whole batches
    assert accumulated.notes["accumulation_no_sync"] is True
    assert accumulated.notes["accumulation_unsynced_micro_batches"] == 4 * 3
    assert accumulated.notes["accumulation_micro_batches"] == [[8, 8, 8, 8], [1, 1, 1, 1]]


# --- ema -------------------------------------------------------------------------------------


def val_loss_of(weights: list[torch.Tensor]) -> float:
    model = MLP()
    with torch.no_grad():
        for param, value in zip(model.parameters(), weights, strict=True):
            param.copy_(value)
        inputs, targets = _data(VAL_SIZE, 1).tensors
        return float(nn.functional.cross_entropy(model(inputs), targets))


def test_validation_measures_the_average_and_training_goes_on_from_the_raw_weights(run: Runner) -> None:
    decay, every = 0.8, 3
    options = RunOptions(eval_every_steps=every)
    result, (record,) = run(Budget(steps=9), options=options, ema=True, ema_decay=decay)
    raw_result, (raw,) = run(Budget(steps=9), options=options)

    # training is untouched: the raw weights after every step are the run's without the knob
    for mine, theirs in zip(record["after_step"], raw["after_step"], strict=True):
        assert max_difference(mine["weights"], theirs["weights"]) == 0

    # the average, computed here from the weights after each step
    average, averages = record["initial"], {}
    for point in record["after_step"]:
        average = [decay * a + (1 - decay) * w for a, w in zip(average, point["weights"])]
        averages[point["step"]] = average
    evals = [point["step"] for point in record["before_eval"]]
    assert evals == [p.step for p in result.curve] == [3, 6, 9]  # the last before FIT_END
    for before, after in zip(record["before_eval"], record["after_eval"], strict=True):
        step = before["step"]
        assert max_difference(before["weights"], averages[step]) < 1e-6  # validated: the average
        weights_after_step = record["after_step"][step - 1]["weights"]
        assert max_difference(after["weights"], weights_after_step) == 0  # put back
        assert after["metrics"]["val_loss"] == pytest.approx(val_loss_of(averages[step]), abs=1e-5)
    # what was validated differs from the raw model (the average lags it)
    assert result.val_loss == pytest.approx(val_loss_of(averages[9]), abs=1e-5)
    assert raw_result.val_loss == pytest.approx(val_loss_of(raw["after_step"][-1]["weights"]), abs=1e-5)
    assert abs(result.val_loss - raw_result.val_loss) > 1e-3
    assert [p.val_loss for p in result.curve] == pytest.approx(
        [val_loss_of(averages[s]) for s in evals], abs=1e-5)
    # FIT_END: the run ends with the average in the model
    assert max_difference(record["final"], averages[9]) < 1e-6
    assert result.notes["ema"] == f"decay {decay:g}, 9 updates; validation and the final model use the average"
    assert "ema" not in raw_result.notes


# --- the notes, from the command line --------------------------------------------------------


def test_trial_run_shows_each_knobs_notes_in_its_json(tmp_path: Path) -> None:
    env = dict(os.environ, AUTOTUNE_HOME=str(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    sets = {"batch_size": 32, "threads": 1, "doc_lr_schedule": "onecycle", "accumulation_steps": 4,
            "ema": "true", "ema_decay": 0.9}
    args = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.cli", "trial", "run", "--workload", WORKLOAD,
         "--plugin", LR_SCHEDULE, "--plugin", GRAD_ACCUMULATION, "--plugin", EMA, *args,
         "--budget-steps", "6", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok", result["error"]
    assert result["steps"] == 6 and result["samples"] == 6 * 32
    notes = result["notes"]
    assert notes["doc_lr_schedule"] == "onecycle over 6 optimizer steps (peak lr 0.01)"
    assert notes["accumulation_steps"] == 4
    assert notes["accumulation_micro_batches"] == [[8, 8, 8, 8]]
    assert notes["accumulation_no_sync"] is False
    assert notes["ema"] == "decay 0.9, 6 updates; validation and the final model use the average"
    assert result["settings"]["doc_lr_schedule"] == "onecycle" and result["settings"]["ema_decay"] == 0.9
