"""One training run in this process: build the plan from the knobs, train, measure, clean up.

A data-parallel run's processes each run this (with their `rank`); autotune.run.engine decides
whether a run happens here or spread over several processes.
"""

from __future__ import annotations

import gc
import json
import os
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable

import torch

from autotune.budget import Budget
from autotune.errors import RunError, Unsupported
from autotune.knob import apply_order, exclusion
from autotune.run.loop import train
from autotune.run.loop_events import Event
from autotune.run.measure import nonzero_fraction, peak_memory, seed_everything
from autotune.run.plan import Rank, TrainingPlan
from autotune.run.saving import save_model
from autotune.run.types import EvalPoint, Progress, RunOptions, RunResult

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.workloads import Workload

# Asked to spread a run over N processes: returns their combined result (autotune.run.engine).
Spread = Callable[[int], RunResult]


def failure(exc: Exception) -> tuple[str, str, str | None]:
    """What a run that raised `exc` ends as: its status ("unsupported", "oom", "failed"), the
    one-line error, and the traceback when the exception was unexpected (not a RunError).
    Call it in the `except` block: the traceback is the one being handled."""
    if isinstance(exc, Unsupported):
        return "unsupported", str(exc), None
    if isinstance(exc, torch.OutOfMemoryError):
        return "oom", f"out of memory: {str(exc).splitlines()[0]}", None
    if isinstance(exc, RunError):
        return "failed", str(exc), None
    return "failed", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, traceback.format_exc()


def build_plan(
    registry: "Registry",
    hardware: "Hardware",
    workload: "Workload",
    settings: dict[str, Any],
    device: torch.device,
    rank: Rank | None = None,
) -> TrainingPlan:
    """Let every knob that applies here edit a fresh plan with its settings, in apply order
    (autotune.knob.apply_order)."""
    plan = TrainingPlan(
        device=device, hardware=hardware, workload=workload, loss_fn=workload.loss_fn, rank=rank,
        own_loop=workload.traits().own_loop,
    )
    apply_knobs(registry, hardware, workload, settings, plan)
    if plan.optimizer_factory is None:
        plan.optimizer_factory = torch.optim.SGD
        plan.optimizer_kwargs.setdefault("lr", 0.01)
    return plan


def apply_knobs(registry: "Registry", hardware: "Hardware", workload: "Workload", settings: dict[str, Any],
                plan: Any) -> None:
    """Every knob of `registry` that applies here edits `plan` (a TrainingPlan, or an
    InferencePlan for an inference registry) with its settings, in apply order. A knob that
    raises fails the run with its name and plugin; Unsupported passes through. On any failure
    the process-wide changes of the knobs that did apply are undone (`plan.cleanups`)."""
    traits = workload.traits()
    own_loop = getattr(plan, "own_loop", False)
    try:
        for knob in apply_order(list(registry.knobs.values())):
            if exclusion(knob, hardware, traits) is not None:
                continue
            mine = {p.name: settings[p.name] for p in knob.params(hardware) if p.name in settings}
            hooked = _hooked(plan) if own_loop else {}
            try:
                knob.apply(mine, plan)
            except Unsupported:
                raise
            except Exception as exc:
                plugin = registry.knob_plugins.get(knob.name, "?")
                raise RunError(
                    f"knob '{knob.name}' (plugin '{plugin}') raised in apply: {type(exc).__name__}: {exc}"
                ) from exc
            if own_loop:  # a knob that hooked an event your loop cannot fire would do nothing
                now = _hooked(plan)
                unfired = [event for event in OWN_LOOP_UNFIRED if now.get(event, 0) > hooked.get(event, 0)]
                if unfired:
                    raise Unsupported(unfired_reason(knob.name, unfired))
    except BaseException:
        # The caller never gets this plan to clean up: undo the process-wide changes (threads,
        # matmul precision) of the knobs that did apply, or they leak into the next run here.
        for cleanup in plan.cleanups:
            cleanup()
        raise


# The loop events a user's own loop cannot fire: the script does its forward and validation itself.
OWN_LOOP_UNFIRED = (Event.STEP, Event.BEFORE_EVAL)


def unfired_reason(knob: str, events: list[Event]) -> str:
    """Why `knob`, which hooks `events` (of OWN_LOOP_UNFIRED), is refused in your own loop."""
    return (
        f"knob '{knob}' hooks the loop event {' and '.join(e.value for e in events)}, which your own loop "
        "(--script, autotune.apply) cannot fire: it would do nothing there (a knob that needs autotune's "
        "loop declares needs=(Need.ENGINE_LOOP,) and is left out)"
    )


def _hooked(plan: Any) -> dict[Event, int]:
    """How many handlers `plan` has for each loop event (an InferencePlan has none)."""
    return {event: len(fns) for event, fns in getattr(plan, "handlers", {}).items()}


def plain(notes: dict[str, Any]) -> dict[str, Any]:
    """A knob's notes as JSON data (they cross processes and land in trial attributes): values
    that are not numbers, strings, booleans or lists/dicts of them become their str()."""
    try:
        return json.loads(json.dumps(notes, default=str))
    except (TypeError, ValueError):
        return {str(k): str(v) for k, v in notes.items()}


def run_here(
    workload: "Workload",
    settings: dict[str, Any],
    registry: "Registry",
    hardware: "Hardware",
    budget: Budget,
    options: RunOptions,
    *,
    device: str | None = None,
    on_eval: Callable[[EvalPoint], bool | None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    rank: Rank | None = None,
    spread: Spread | None = None,
) -> RunResult:
    """Train `workload` under `settings` for `budget` in this process and measure it.

    When the knobs ask for several processes and this is not one of them (`rank` None),
    `spread(processes)` runs it instead. Failures inside training come back as a RunResult with
    status "failed" / "oom" / "unsupported" and the exception's message, never as an exception.
    """
    wall_start = time.perf_counter()
    dev = torch.device(device or hardware.device_type)
    result = RunResult(status="ok", settings=dict(settings), device=str(dev), target=options.target)
    plan: TrainingPlan | None = None
    model = optimizer = None
    try:
        seed_everything(options.seed)
        plan = build_plan(registry, hardware, workload, settings, dev, rank)
        if plan.processes > 1 and rank is None:
            if spread is None:
                raise Unsupported(f"the knobs ask for {plan.processes} processes, and this run cannot start them")
            result = spread(plan.processes)
        else:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            model, optimizer = train(plan, budget, result, options, on_eval, on_progress)
            result.nonzero_fraction = nonzero_fraction(model)
            if options.save_model and result.status == "ok" and (rank is None or rank.is_first):
                result.saved_model = {"path": os.path.abspath(options.save_model), **save_model(
                    model, options.save_model, workload, result.settings,
                    {"name": options.metric, "direction": options.direction}, result.metrics,
                )}
    except Exception as exc:
        result.status, result.error, result.traceback = failure(exc)
    finally:
        if plan is None or plan.processes == 1 or rank is not None:
            result.peak_memory_bytes = peak_memory(dev)
        if plan is not None:
            result.notes = {**result.notes, **plain(plan.notes)}
            for cleanup in plan.cleanups:
                cleanup()
        del model, optimizer, plan
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    result.wall_time = time.perf_counter() - wall_start
    return result
