"""optimizer: which torch.optim algorithm, with its own settings only where they mean something
(momentum for SGD and RMSprop; weight decay and beta2 for Adam and AdamW)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotune import Knob, Param, TrainingPlan, hookimpl

if TYPE_CHECKING:
    import torch

CHOICES = ("sgd", "adam", "adamw", "rmsprop")


def optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """The torch.optim class for each name in CHOICES."""
    import torch

    return {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "rmsprop": torch.optim.RMSprop,
    }


class Optimizer(Knob):
    name = "optimizer"
    help = "torch.optim algorithm: sgd, adam, adamw or rmsprop, with momentum / weight decay / betas"
    kind = "statistical"

    def params(self, hardware):
        return [
            Param("optimizer", "categorical", choices=CHOICES),
            Param("momentum", "float", low=0.0, high=0.95, valid=(0.0, 0.999),
                  when={"optimizer": ("sgd", "rmsprop")}, help="momentum (sgd, rmsprop)"),
            Param("weight_decay", "float", low=1e-6, high=1e-1, log=True, valid=(0.0, 1.0),
                  when={"optimizer": ("adam", "adamw")}, help="weight decay (adam, adamw)"),
            Param("beta2", "float", low=0.9, high=0.9999, valid=(0.0, 0.99999),
                  when={"optimizer": ("adam", "adamw")}, help="second-moment decay (adam, adamw)"),
        ]

    def baseline(self, hardware):
        return {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0, "beta2": 0.999}

    def apply(self, settings, plan: TrainingPlan):
        name = settings["optimizer"]
        plan.optimizer_factory = optimizers()[name]
        if name in ("sgd", "rmsprop"):
            plan.optimizer_kwargs["momentum"] = settings.get("momentum", 0.0)
        else:
            plan.optimizer_kwargs["weight_decay"] = settings.get("weight_decay", 0.0)
            plan.optimizer_kwargs["betas"] = (0.9, settings.get("beta2", 0.999))


@hookimpl
def register_knobs(register):
    register(Optimizer())
