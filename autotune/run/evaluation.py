"""How a run trains a step and validates: the workload's own `train_step` / `evaluate`, or the
classification defaults, and the metrics of several processes combined into one set."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import torch

from autotune import batches
from autotune.errors import RunError
from autotune.run.collective import Collective
from autotune.run.loop_state import autocast

if TYPE_CHECKING:
    from autotune.run.plan import TrainingPlan

TrainStep = Callable[[torch.nn.Module, Any], torch.Tensor]


def train_step_for(plan: "TrainingPlan") -> TrainStep:
    """The workload's train_step, or the classification step: `loss_fn(model(inputs), targets)`
    with the plan's loss_fn (a knob may have changed it)."""
    if plan.workload.train_step is not None:
        return plan.workload.train_step

    def classification_step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        inputs, targets = batch[0], batch[1]
        assert plan.loss_fn is not None
        return plan.loss_fn(model(inputs), targets)

    return classification_step


def classification_metrics(plan: "TrainingPlan", model: torch.nn.Module, data: Iterable[Any]) -> dict[str, float]:
    """Mean loss and top-1 accuracy over `(inputs, targets)` batches."""
    assert plan.loss_fn is not None
    loss_sum, correct, count = 0.0, 0, 0
    for batch in data:
        inputs, targets = batch[0], batch[1]
        outputs = model(inputs)
        loss_sum += float(plan.loss_fn(outputs.float(), targets).item()) * len(targets)
        correct += plan.workload.metric_fn(outputs, targets)
        count += len(targets)
    return {"val_loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1)}


def evaluate(
    plan: "TrainingPlan", model: torch.nn.Module, loader: Iterable[Any], prepare: Callable[[Any], Any]
) -> dict[str, float]:
    """Validate `model` on `loader` (batches moved and transformed by `prepare`) in eval mode,
    without gradients, under the run's autocast; the metrics of a multi-process run are the
    sample-weighted means of every process's."""
    count = 0

    def prepared() -> Iterator[Any]:
        nonlocal count
        for batch in loader:
            batch = prepare(batch)
            count += batches.batch_size(batch)
            yield batch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(plan):
            if plan.workload.evaluate is not None:
                raw = plan.workload.evaluate(model, prepared())
            else:
                raw = classification_metrics(plan, model, prepared())
    finally:
        model.train(was_training)
    metrics = checked(plan.workload.name, raw)
    if plan.rank is not None:
        metrics = combined(Collective(plan.device), metrics, count)
    return metrics


def checked(workload: str, raw: Any) -> dict[str, float]:
    """The metrics `evaluate` returned as plain floats; RunError naming the workload otherwise."""
    if not isinstance(raw, dict) or not raw:
        raise RunError(
            f"workload '{workload}': evaluate must return a dict of metric name -> number, got {type(raw).__name__}"
        )
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        try:
            metrics[str(name)] = float(value.item() if isinstance(value, torch.Tensor) else value)
        except (TypeError, ValueError, RuntimeError):
            raise RunError(f"workload '{workload}': metric '{name}' is not a number ({value!r})") from None
    return metrics


def combined(comm: Collective, metrics: dict[str, float], count: int) -> dict[str, float]:
    """Sample-weighted means over the processes (each validates its own shard). Every process
    must report the same names, sorted so that the sums line up."""
    names = sorted(metrics)
    totals = comm.sum(float(count), *(metrics[n] * count if math.isfinite(metrics[n]) else metrics[n] for n in names))
    samples = max(totals[0], 1.0)
    return {name: total / samples for name, total in zip(names, totals[1:])}


def primary(workload: str, metrics: dict[str, float], name: str) -> float:
    """The primary metric's value; RunError when evaluate did not measure it."""
    if name not in metrics:
        raise RunError(
            f"workload '{workload}': validation measured {', '.join(sorted(metrics))} but not "
            f"'{name}', the metric the run is judged by"
        )
    return metrics[name]
