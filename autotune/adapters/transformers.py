"""A `--script` trial's settings as Hugging Face TrainingArguments: a few lines in your script.

    from transformers import Trainer
    from autotune.adapters.transformers import adapt

    trial = adapt(model)                    # this trial's settings (by hand: the baseline)
    args = trial.training_args(output_dir="out", eval_strategy="steps", eval_steps=50, report_to="none")
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      callbacks=[trial.callback()])
    trainer.train()

`training_args(**yours)` is `TrainingArguments(**yours, **the trial's)`: per_device_train_batch_size
and gradient_accumulation_steps (batch_size, micro_batches), learning_rate, optim, optim_args,
weight_decay, adam_beta1/adam_beta2 (optimizer, momentum, weight_decay, beta2, optimizer_impl),
lr_scheduler_type and warmup_steps (lr_schedule, lr_warmup_fraction), bf16/fp16 (precision),
dataloader_num_workers/persistent_workers/prefetch_factor/pin_memory (workers), torch_compile and
torch_compile_mode, activation_checkpointing (gradient_checkpointing before transformers 5.2x), use_cpu, and the budget
(max_steps or num_train_epochs). threads, matmul_precision (TF32 on CUDA: what `tf32=True` would
set) and cudnn_benchmark are set process-wide by their knobs, so `tf32` is left to them. The
callback counts each optimizer step for the session, reports each evaluation (`eval_loss` as
`val_loss`, `eval_accuracy` as `accuracy` ...), evaluates once more at the budget's end and stops
training when the session says stop. A setting with no TrainingArguments equivalent is refused
(autotune.errors.Unsupported): the trial is recorded `unsupported here: ...`.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import torch

from autotune.adapters.common import Adapted, current
from autotune.errors import UsageError

if TYPE_CHECKING:
    from autotune.sessions import Session

HANDLED = {
    "batch_size", "micro_batches", "workers", "precision", "optimizer", "momentum", "weight_decay", "beta2",
    "learning_rate", "optimizer_impl", "lr_schedule", "lr_warmup_fraction", "torch_compile", "compile_mode",
    "activation_checkpointing", "threads", "matmul_precision", "cudnn_benchmark",
}
# applied by the Trainer, not by the knobs' plan
OWNED = {"micro_batches", "lr_schedule", "lr_warmup_fraction", "torch_compile", "compile_mode",
         "activation_checkpointing"}
SCHEDULES = ("constant", "cosine", "linear")  # the knob's names, HF's lr_scheduler_type names too
# What evaluate() returns beside the metrics: how long it took, not how good the model is
NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def adapt(model: torch.nn.Module, session: "Session | None" = None) -> "TransformersTrial":
    """The trial's settings for `model` (a PreTrainedModel); `session`: autotune.session()."""
    return TransformersTrial(current(session), model)


class TransformersTrial:
    """A trial's settings as TrainingArguments, and the callback that reports to the session."""

    def __init__(self, session: "Session", model: torch.nn.Module) -> None:
        self.session = session
        self.adapted = adapted = Adapted("transformers", session, model, HANDLED, {}, OWNED)
        try:
            self.mapped = {**self._batches(), **self._optimizer(), **self._schedule(), **self._systems()}
        except Exception:
            adapted.close()
            raise

    def _batches(self) -> dict[str, Any]:
        rows, accumulate = self.adapted.split_batch()
        loader = self.adapted.loader_kwargs()
        return {
            "per_device_train_batch_size": rows, "gradient_accumulation_steps": accumulate,
            "dataloader_num_workers": loader.get("num_workers", 0),
            "dataloader_persistent_workers": loader.get("persistent_workers", False),
            "dataloader_prefetch_factor": loader.get("prefetch_factor"),
            "dataloader_pin_memory": loader.get("pin_memory", False),
        }

    def _optimizer(self) -> dict[str, Any]:
        settings, adapted = self.adapted.settings, self.adapted
        name, impl = settings.get("optimizer", "sgd"), settings.get("optimizer_impl", "default")
        args: dict[str, Any] = {"learning_rate": settings.get("learning_rate", 0.01)}
        if name in ("adam", "adamw"):
            if name == "adam" and settings.get("weight_decay", 0.0) > 0:
                adapted.refuse("optimizer", "the Trainer has AdamW (decoupled weight decay), not Adam's L2 decay; "
                                            "adam with weight_decay 0 is adamw with 0 and is mapped")
            if impl == "foreach":
                adapted.refuse("optimizer_impl", "TrainingArguments.optim has adamw_torch and adamw_torch_fused, "
                                                 "no foreach AdamW")
            return {**args, "optim": "adamw_torch_fused" if impl == "fused" else "adamw_torch",
                    "weight_decay": settings.get("weight_decay", 0.0), "adam_beta1": 0.9,
                    "adam_beta2": settings.get("beta2", 0.999)}
        if impl != "default":
            adapted.refuse("optimizer_impl", f"TrainingArguments.optim has no {impl} {name}")
        return {**args, "optim": name, "optim_args": f"momentum={settings.get('momentum', 0.0)}",
                "weight_decay": 0.0}

    def _schedule(self) -> dict[str, Any]:
        kind = self.adapted.settings.get("lr_schedule", "constant")
        if kind not in SCHEDULES:
            self.adapted.refuse("lr_schedule", f"TrainingArguments.lr_scheduler_type has no {kind} "
                                               f"(mapped: {', '.join(SCHEDULES)})")
        warmup = self.adapted.settings.get("lr_warmup_fraction", 0.0) if kind != "constant" else 0.0
        return {"lr_scheduler_type": kind, "warmup_steps": float(warmup)}  # a float below 1: a fraction

    def _systems(self) -> dict[str, Any]:
        settings, device = self.adapted.settings, self.adapted.device
        precision = settings.get("precision", "fp32")
        args: dict[str, Any] = {"bf16": precision == "bf16", "fp16": precision == "fp16",
                                "use_cpu": device.type == "cpu"}
        if settings.get("activation_checkpointing"):
            args[checkpointing_argument()] = True
        if settings.get("torch_compile"):
            args.update(torch_compile=True, torch_compile_mode=settings.get("compile_mode", "default"))
        return args

    def training_args(self, **yours: Any) -> Any:
        """`TrainingArguments(**yours, **the trial's)`; in a trial its budget replaces your
        max_steps / num_train_epochs."""
        from transformers import TrainingArguments

        budget = self._budget()
        clash = sorted(k for k in yours if k in self.mapped)
        if clash:
            raise UsageError(f"transformers adapter: {', '.join(clash)} come from the trial's settings: "
                             f"leave them out of training_args()")
        self.adapted.record(self.mapped)
        return TrainingArguments(**{**yours, **self.mapped, **budget})

    def _budget(self) -> dict[str, Any]:
        steps, epochs = self.adapted.budget_steps(), self.adapted.budget_epochs()
        if steps is not None:
            return {"max_steps": steps}
        if epochs is not None:
            return {"max_steps": -1, "num_train_epochs": epochs}
        if self.adapted.session.budget is not None:  # seconds: the callback stops training
            return {"max_steps": -1, "num_train_epochs": 10**6}
        return {}

    def callback(self) -> Any:
        """The TrainerCallback that reports to the session: give it to `Trainer(callbacks=[...])`."""
        rows, accumulate = self.adapted.split_batch()
        return _callback_class()(self.adapted, rows * accumulate, accumulate)


def checkpointing_argument() -> str:
    """TrainingArguments' name for activation checkpointing: `activation_checkpointing` from
    transformers 5.2x on (`gradient_checkpointing` warns there), `gradient_checkpointing` before."""
    from transformers import TrainingArguments

    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def eval_metrics(metrics: dict[str, Any] | None) -> dict[str, float]:
    """evaluate()'s result as the session's metrics: `eval_loss` -> `val_loss`, `eval_X` -> `X`,
    timings left out."""
    values = {}
    for key, value in (metrics or {}).items():
        name = key.removeprefix("eval_")
        if name in NOT_METRICS or not isinstance(value, (int, float)):
            continue
        values["val_loss" if name == "loss" else name] = float(value)
    return values


@functools.lru_cache(maxsize=None)
def _callback_class() -> type:
    """The TrainerCallback class (made on first use: importing this module imports no transformers)."""
    from transformers import TrainerCallback

    class AutotuneCallback(TrainerCallback):
        """Counts the Trainer's optimizer steps for the session, reports each evaluation, and
        stops training when the session says stop (budget spent, pruned, target reached)."""

        def __init__(self, adapted: Adapted, rows: int, accumulate: int) -> None:
            self.adapted, self.rows, self.accumulate = adapted, rows, accumulate

        def on_train_begin(self, args: Any, state: Any, control: Any, train_dataloader: Any = None, **kw: Any) -> None:
            try:
                per_epoch = math.ceil(len(train_dataloader) / self.accumulate)
            except TypeError:  # an iterable dataset: no epoch length
                per_epoch = None
            self.adapted.meter.started(per_epoch)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.adapted.meter.batch(self.rows)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.adapted.meter.stepped()
            if self.adapted.session.should_stop:
                control.should_training_stop = True
                control.should_evaluate = True  # the budget's last step is judged too

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            values = eval_metrics(metrics)
            if values and self.adapted.report(values):
                control.should_training_stop = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.adapted.close()

    return AutotuneCallback
