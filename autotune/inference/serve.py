"""One inference trial in this process: the trained model from a checkpoint, every inference
knob's edit of the plan, the served model built from it, measured (autotune.inference.timing)
and judged on the validation set by the workload's own evaluation (autotune.run.evaluation).

Failures come back as an InferenceResult with status "failed" / "oom" / "unsupported" and the
exception's message, never as an exception, as a training run's do.
"""

from __future__ import annotations

import gc
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch.utils.data import DataLoader

from autotune import batches
from autotune.inference import calls, timing
from autotune.inference.plan import EXECUTION_ORDER, InferencePlan
from autotune.inference.types import InferenceOptions, InferenceResult
from autotune.run.evaluation import evaluate, primary
from autotune.run.local import apply_knobs, failure, plain
from autotune.run.measure import MachineLoad, seed_everything
from autotune.run.plan import TrainingPlan
from autotune.run.saving import model_from
from autotune.workloads import dataset_size

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.workloads import Workload

EXAMPLE_ROWS = 2  # the example call knobs trace with: 2+ samples, so a traced batch size stays free
EVAL_BATCH = 256  # validation batch, as training's validation uses at least


class Served(torch.nn.Module):
    """The served model as validation sees it: floating outputs back in fp32 (a loss on bf16
    logits would round), and `train()`/`eval()` that do not reach into the model (an exported
    program refuses them; the model was put in eval mode before it was transformed)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        return _to_float(out)

    def train(self, mode: bool = True) -> "Served":
        self.training = mode
        return self


def _to_float(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _to_float(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float(v) for v in value)
    return value


def build_plan(registry: "Registry", hardware: "Hardware", workload: "Workload", settings: dict[str, Any],
               model: torch.nn.Module, device: torch.device, seed: int = 0) -> InferencePlan:
    """A plan for serving `model`, edited by every inference knob that applies here; `seed` is
    the trial's (InferencePlan.seed)."""
    model = model.to(device).eval()
    plan = InferencePlan(
        device=device, hardware=hardware, workload=workload, model=model, seed=seed,
        example=calls.model_call(workload, model, calls.batch_of(workload, EXAMPLE_ROWS), device),
        calibration=lambda n: calls.calls(workload, model, plan.batch_size, n, device),
    )
    apply_knobs(registry, hardware, workload, settings, plan)
    return plan


def built(plan: InferencePlan) -> tuple[Any, int | None]:
    """The served model (every transform run in order) and its size on disk, taken before the
    transforms that wrap it for execution (EXECUTION_ORDER)."""
    model: Any = plan.model
    size = None
    for order, fn in sorted(plan.model_transforms, key=lambda item: item[0]):
        if order >= EXECUTION_ORDER and size is None:
            size = timing.model_bytes(model)
        out = fn(model)
        model = model if out is None else out
    if size is None:
        size = timing.model_bytes(model)
    return model, size


def serve(
    registry: "Registry", hardware: "Hardware", workload: "Workload", payload: dict[str, Any],
    settings: dict[str, Any], options: InferenceOptions, device: str | None = None,
) -> InferenceResult:
    """Serve the checkpoint `payload` (autotune.run.saving) under `settings` and measure it."""
    started = time.perf_counter()
    dev = torch.device(device or hardware.device_type)
    result = InferenceResult(status="ok", settings=dict(settings), device=str(dev))
    load = MachineLoad()
    plan: InferencePlan | None = None
    memory: timing.MemoryPeak | None = None
    served = None
    try:
        seed_everything(options.seed)
        memory = timing.MemoryPeak(dev)
        plan = build_plan(registry, hardware, workload, settings, model_from(payload, workload), dev,
                          seed=options.seed)
        plan.unmeasured = memory.paused  # a fine-tune before serving is not the served model's memory
        # what the model is called with, taken from the trained model before any transform
        one = calls.model_call(workload, plan.model, calls.batch_of(workload, 1), dev)
        many = calls.model_call(workload, plan.model, calls.batch_of(workload, plan.batch_size), dev)
        served, result.model_bytes = built(plan)
        result.batch_size = plan.batch_size
        measure_speed(plan, served, one, many, options, result)
        result.peak_memory_bytes = memory.stop()
        if options.paired is not None:
            pair_with(options.paired, registry, hardware, workload, payload, plan, served, one, options, result)
        judge(plan, served, options, result)
    except Exception as exc:
        result.status, result.error, result.traceback = failure(exc)
    finally:
        if memory is not None:
            memory.stop()  # its sampling thread ends here, whatever happened
        if plan is not None:
            result.notes = {**result.notes, **plain(plan.notes)}
            for cleanup in plan.cleanups:
                cleanup()
        del served, plan
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    result.machine = load.finish()
    result.wall_time = time.perf_counter() - started
    return result


def timed_side(plan: InferencePlan, default_threads: int) -> tuple[int, Callable[[], Any]]:
    """`plan`'s served model built, as timing.alternating times it: the threads it is served
    with (`default_threads` when no knob set them) and one call at batch 1."""
    args, kwargs = plan.inputs(calls.model_call(plan.workload, plan.model, calls.batch_of(plan.workload, 1),
                                                plan.device))
    served, _ = built(plan)
    return plan.threads or default_threads, lambda: served(*args, **kwargs)


def pair_with(reference: dict[str, Any], registry: "Registry", hardware: "Hardware", workload: "Workload",
              payload: dict[str, Any], plan: InferencePlan, served: Any, one: Any, options: InferenceOptions,
              result: InferenceResult) -> None:
    """The served model against the unoptimized one (`reference` settings), built beside it in
    this process and timed in alternating blocks (timing.alternating): `paired_speedup`. A
    trial's own latency moves with the machine from one process to the next (the same digits
    model measured 0.28 to 0.62 ms seconds apart), its ratio to a model timed at the same
    moment far less; the study ranks trials by it. Failing to build the reference leaves it
    unset, with a note."""
    ref_plan = None
    try:
        ref_plan = build_plan(registry, hardware, workload, reference, model_from(payload, workload), plan.device,
                              seed=options.seed)
        default = torch.get_num_threads()
        args, kwargs = plan.inputs(one)
        sides = [timed_side(ref_plan, default), (plan.threads or default, lambda: served(*args, **kwargs))]
        p50s, _ = timing.alternating(sides, options.warmup, options.iterations, options.paired_rounds, plan.device)
        result.paired_speedup = statistics.median(r / c for r, c in zip(p50s[0], p50s[1]))
    except Exception as exc:  # the trial's own measurements stand; only the pairing is lost
        result.notes["paired_speedup"] = f"not measured: {type(exc).__name__}: {exc}"[:300]
    finally:
        if ref_plan is not None:
            for cleanup in reversed(ref_plan.cleanups):
                cleanup()
        if plan.threads:
            torch.set_num_threads(plan.threads)


def measure_speed(plan: InferencePlan, served: Any, one: Any, many: Any, options: InferenceOptions,
                  result: InferenceResult) -> None:
    """Latency of the call `one` (batch 1), then throughput of the call `many` (the plan's batch
    size), each with the input transforms applied (autotune.inference.timing)."""
    args, kwargs = plan.inputs(one)
    first, times = timing.timed_calls(lambda: served(*args, **kwargs), options.warmup, options.iterations, plan.device)
    result.latency_p50, result.latency_p95 = timing.latency(times)
    compile_time = first
    if plan.batch_size > 1:
        batch_args, batch_kwargs = plan.inputs(many)
        first, times = timing.timed_calls(lambda: served(*batch_args, **batch_kwargs), options.warmup,
                                          options.iterations, plan.device)
        compile_time += first
    result.throughput = timing.throughput(times, plan.batch_size)
    if plan.compiled:
        result.compile_time = compile_time


def judge(plan: InferencePlan, served: Any, options: InferenceOptions, result: InferenceResult) -> None:
    """The workload's metrics on the validation set, measured on the served model by the
    engine's own evaluation (the workload's `evaluate`, or loss and accuracy)."""
    workload = plan.workload
    loader = DataLoader(workload.val_data, batch_size=max(EVAL_BATCH, plan.batch_size), shuffle=False)
    limit = options.max_eval_batches

    def prepare(batch: Any) -> Any:
        return batches.to_device(batch, plan.device, False)

    judged = Served(_Inputs(served, plan))
    eval_plan = TrainingPlan(device=plan.device, hardware=plan.hardware, workload=workload, loss_fn=workload.loss_fn)
    with torch.inference_mode():  # as the calls were timed: a compiled model is not compiled again
        metrics = evaluate(eval_plan, judged, _first(loader, limit), prepare)
    result.metrics = metrics
    result.val_loss, result.val_accuracy = metrics.get("val_loss"), metrics.get("accuracy")
    result.metric_value = primary(workload.name, metrics, options.metric)
    result.val_samples = dataset_size(workload.val_data) if limit is None else None


class _Inputs:
    """The served model called with every input transform applied to its arguments (cast to the
    serving precision, channels_last), whatever the workload's evaluate takes from its batches."""

    def __init__(self, served: Any, plan: InferencePlan) -> None:
        self.served = served
        self.plan = plan

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = self.plan.inputs((args, kwargs))
        return self.served(*args, **kwargs)


def _first(loader: DataLoader, limit: int | None) -> Any:
    for i, batch in enumerate(loader):
        if limit is not None and i >= limit:
            return
        yield batch
