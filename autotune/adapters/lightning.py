"""A `--script` trial's settings in Lightning: a few lines in your script.

    import lightning as L
    import autotune
    from autotune.adapters.lightning import adapt

    trial = adapt(model)                   # your LightningModule; this trial's settings (by hand: the baseline)
    train_loader = DataLoader(train_set, shuffle=True, **trial.loader_kwargs())
    val_loader = DataLoader(val_set, **trial.loader_kwargs(train=False))
    trainer = L.Trainer(**trial.trainer_kwargs(max_epochs=20, logger=False))
    trainer.fit(trial.model, train_loader, val_loader)

What goes where (docs/adapters.md has the table): batch_size, workers -> `loader_kwargs()`;
precision, micro_batches (accumulate_grad_batches), the device, the budget (max_steps or
max_epochs) and the callback -> `trainer_kwargs()`; optimizer, learning_rate, momentum,
weight_decay, beta2, optimizer_impl and lr_schedule -> the module's `configure_optimizers`, which
the adapter replaces (yours is not called: the trial's optimizer would otherwise be applied over
yours); torch_compile -> `trial.model` is `torch.compile(model)`; threads, matmul_precision and
cudnn_benchmark are set process-wide by their knobs. The callback counts each optimizer step
for the session, reports each validation (`self.log`ged metrics, `val_loss` among them) and stops
the Trainer when the session says stop. Anything else away from its baseline is refused
(autotune.errors.Unsupported): the trial is recorded `unsupported here: ...`.
"""

from __future__ import annotations

import functools
import math
import types
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from autotune import batches
from autotune.adapters.common import Adapted, current
from autotune.errors import UsageError

if TYPE_CHECKING:
    from autotune.sessions import Session

PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
ACCELERATOR = {"cuda": "gpu", "cpu": "cpu", "mps": "mps"}
HANDLED = {
    "batch_size", "micro_batches", "workers", "precision", "optimizer", "momentum", "weight_decay", "beta2",
    "learning_rate", "optimizer_impl", "lr_schedule", "lr_warmup_fraction", "torch_compile", "compile_mode",
    "threads", "matmul_precision", "cudnn_benchmark",
}
REFUSED = {
    "activation_checkpointing": "Lightning's Trainer has no argument for it: checkpoint your blocks in the "
                                "LightningModule (torch.utils.checkpoint)",
}
# applied by Lightning or by this adapter, not by the knobs' plan
OWNED = {"micro_batches", "lr_schedule", "lr_warmup_fraction", "torch_compile", "compile_mode"}
MAPPED = ("precision", "accumulate_grad_batches", "accelerator", "devices")  # trainer_kwargs() sets these


def adapt(model: torch.nn.Module, session: "Session | None" = None) -> "LightningTrial":
    """`model` (a LightningModule) made ready for this trial (`session`: autotune.session())."""
    return LightningTrial(current(session), model)


class LightningTrial:
    """A trial's settings as Lightning takes them; `model` is what to give `trainer.fit`."""

    def __init__(self, session: "Session", module: torch.nn.Module) -> None:
        self.session = session
        self.adapted = adapted = Adapted("lightning", session, module, HANDLED, REFUSED, OWNED)
        settings = adapted.settings
        self.schedule = settings.get("lr_schedule", "constant")
        if self.schedule != "constant" and session.budget is not None and session.budget.seconds is not None:
            adapted.close()  # the process-wide knobs put back
            adapted.refuse("lr_schedule", "Lightning's scheduler is sized in steps; a seconds budget has none")
        self.rows, self.accumulate = adapted.split_batch()
        self.module = module
        module.configure_optimizers = types.MethodType(self._configure_optimizers, module)
        self.model = module
        if settings.get("torch_compile"):
            self.model = torch.compile(module, mode=settings.get("compile_mode", "default"))
            adapted.notes["compile_mode"] = settings.get("compile_mode", "default")

    def loader_kwargs(self, train: bool = True) -> dict[str, Any]:
        """batch_size (a micro-batch's, when Lightning accumulates), num_workers,
        persistent_workers, prefetch_factor, pin_memory: for your DataLoaders (`train=False`:
        no batch_size, choose your own)."""
        return self.adapted.loader_kwargs(train)

    def trainer_kwargs(self, **yours: Any) -> dict[str, Any]:
        """Your Trainer arguments plus the trial's: precision, accumulate_grad_batches, the device,
        the budget (it replaces your max_steps / max_epochs in a trial) and the callback."""
        clash = sorted(set(yours) & set(MAPPED))
        if clash:
            raise UsageError(f"lightning adapter: {', '.join(clash)} come from the trial's settings: "
                             f"leave them out of trainer_kwargs()")
        device = self.adapted.device
        mapped: dict[str, Any] = {
            "precision": PRECISION[self.adapted.settings.get("precision", "fp32")],
            "accumulate_grad_batches": self.accumulate,
            "accelerator": ACCELERATOR.get(device.type, device.type),
            "devices": [device.index or 0] if device.type == "cuda" else 1,
        }
        steps, epochs = self.adapted.budget_steps(), self.adapted.budget_epochs()
        if steps is not None:
            mapped.update(max_steps=steps, max_epochs=-1)
        elif epochs is not None:
            mapped.update(max_epochs=epochs, max_steps=-1)
        elif self.adapted.session.budget is not None:  # seconds: the callback stops the Trainer
            mapped.update(max_epochs=-1, max_steps=-1)
        self.adapted.record({**mapped, "batch_size": self.rows})
        callbacks = list(yours.pop("callbacks", None) or [])
        return {**yours, **mapped, "callbacks": [*callbacks, _callback_class()(self.adapted, self.accumulate)]}

    def _configure_optimizers(self, module: Any) -> Any:
        """The trial's optimizer (the knobs' class and arguments) and its schedule over the run."""
        plan = self.adapted.plan
        factory = plan.optimizer_factory or torch.optim.SGD
        optimizer = factory(module.parameters(), **plan.optimizer_kwargs)
        if self.schedule == "constant":
            return optimizer
        total = module.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            self.adapted.refuse("lr_schedule", "the run has no length in steps (give max_steps or max_epochs)")
        fraction = self.adapted.settings.get("lr_warmup_fraction")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(self.schedule, fraction, int(total)))
        self.adapted.notes["lr_schedule"] = f"{self.schedule} over {int(total)} steps (LambdaLR, every step)"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def schedule_factor(kind: str, warmup_fraction: float | None, total: int) -> Callable[[int], float]:
    """Step k's rate over the peak, as the lr_schedule knob moves it (its own arithmetic)."""
    from autotune.plugins.training import lr_schedule

    if warmup_fraction is None:
        warmup_fraction = lr_schedule.DEFAULT_WARMUP
    warm = lr_schedule.warmup_steps(warmup_fraction, total) if kind in lr_schedule.WARMED else 0
    return lambda k: lr_schedule.lr_at_step(kind, 1.0, min(k, total - 1), total, warm)


@functools.lru_cache(maxsize=None)
def _callback_class() -> type:
    """The Lightning Callback class (made on first use: importing this module imports no Lightning)."""
    import lightning.pytorch as pl

    class AutotuneCallback(pl.Callback):
        """Counts Lightning's optimizer steps for the session, reports each validation and
        stops the Trainer when the session says stop (budget spent, pruned, target reached)."""

        def __init__(self, adapted: Adapted, accumulate: int) -> None:
            self.adapted, self.accumulate, self.seen = adapted, accumulate, 0

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.seen = trainer.global_step
            self.adapted.meter.started(math.ceil(trainer.num_training_batches / self.accumulate))

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.adapted.meter.batch(batches.batch_size(batch))

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == self.seen:  # a micro-batch: the step is not over
                return
            self.seen = trainer.global_step
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            self.adapted.meter.stepped(loss if isinstance(loss, torch.Tensor) else None)
            if self.adapted.session.should_stop:
                trainer.should_stop = True

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            metrics = {k: v for k, v in trainer.callback_metrics.items() if not k.startswith("train")}
            if metrics and self.adapted.report(metrics):
                trainer.should_stop = True

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            self.adapted.close()

    return AutotuneCallback
