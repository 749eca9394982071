"""Plugin: knob `ema`, an exponential moving average of the weights, judged by validation.

With `ema=true` the knob keeps `ema_w = ema_decay * ema_w + (1 - ema_decay) * w` for every
parameter and floating-point buffer of the model, starting from the weights the run starts with
(FIT_START) and updated after every optimizer step (AFTER_STEP, counted as training time). No
bias correction, no decay warm-up.

- BEFORE_EVAL: the training weights are saved and the average copied into the model, so every
  validation (the curve, pruning, the target, the final metrics) measures the average.
- AFTER_EVAL: the training weights are copied back; training goes on from them as if no
  validation had happened.
- FIT_END: the average is copied into the model for good, so the model the run ends with is the
  one its final metrics describe (a validation after FIT_END, if there is one, therefore measures
  the average too). The training weights are not kept.
"""

import torch

from autotune import Event, Knob, Param, hookimpl


def _tensors(model):
    """The model's parameters and floating-point buffers, in a fixed order."""
    tensors = list(model.parameters())
    tensors += [b for b in model.buffers() if torch.is_floating_point(b)]
    return tensors


class EMA(Knob):
    name = "ema"
    help = "validate (and end with) an exponential moving average of the weights"
    kind = "statistical"

    def params(self, hardware):
        return [
            Param("ema", "bool"),
            Param("ema_decay", "float", low=0.9, high=0.9999, valid=(0.0, 0.999999),
                  when={"ema": (True,)}, help="weight of the running average at each step"),
        ]

    def baseline(self, hardware):
        return {"ema": False, "ema_decay": 0.999}

    def apply(self, settings, plan):
        if not settings["ema"]:
            return
        decay = float(settings.get("ema_decay", 0.999))
        held = {}

        @torch.no_grad()
        def start(state):
            held["average"] = [t.detach().clone() for t in _tensors(state.model)]
            held["updates"] = 0

        @torch.no_grad()
        def update(state, loss):
            for average, current in zip(held["average"], _tensors(state.model)):
                average.lerp_(current.detach(), 1.0 - decay)  # decay * average + (1 - decay) * w
            held["updates"] += 1

        @torch.no_grad()
        def swap_in(state):
            current = _tensors(state.model)
            held["training"] = [t.detach().clone() for t in current]
            for target, average in zip(current, held["average"]):
                target.copy_(average)

        @torch.no_grad()
        def swap_back(state, metrics):
            training = held.pop("training", None)
            if training is None:
                return
            for target, saved in zip(_tensors(state.model), training):
                target.copy_(saved)

        @torch.no_grad()
        def finish(state):
            held.pop("training", None)
            for target, average in zip(_tensors(state.model), held["average"]):
                target.copy_(average)
            state.notes["ema"] = (f"decay {decay:g}, {held['updates']} updates; validation and the "
                                  "final model use the average")

        plan.on(Event.FIT_START, start)
        plan.on(Event.AFTER_STEP, update)
        plan.on(Event.BEFORE_EVAL, swap_in)
        plan.on(Event.AFTER_EVAL, swap_back)
        plan.on(Event.FIT_END, finish)
        plan.notes["ema"] = f"decay {decay:g}; validation uses the average"


@hookimpl
def register_knobs(register):
    register(EMA())
