"""optimizer_impl: which implementation of the chosen torch.optim algorithm runs the step.

- `default`: torch's own choice (the baseline: nothing is passed). torch picks the multi-tensor
  `foreach` implementation when every parameter is on CUDA, and the per-parameter for-loop
  otherwise (so on CPU the default is the for-loop).
- `foreach`: `foreach=True`, the multi-tensor implementation (on CPU, torch's slow path: a loop
  in C++ rather than in Python).
- `fused`: `fused=True`, one kernel for the whole update. In torch 2.14, SGD, Adam and AdamW
  have it on CPU and CUDA (and MPS); RMSprop has none.

The same update either way (up to float rounding), so this is a systems knob. An implementation
the optimizer lacks, or one that does not run on the run's device, makes the run `unsupported`
with the reason, found by trying it on a one-element parameter rather than by a list that would
go stale with the next torch.
"""

from __future__ import annotations

import inspect

from autotune import Knob, Param, TrainingPlan, Unsupported, hookimpl

CHOICES = ("default", "foreach", "fused")


def _takes(factory, argument: str) -> bool:
    """Whether `factory` (an optimizer class, or any callable that builds one) takes `argument`."""
    try:
        return argument in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: it cannot be asked
        return False


def check_runs(factory, kwargs: dict, device) -> None:
    """Build the optimizer with `kwargs` over one parameter on `device` and step it once (fused
    optimizers check their device and dtype at the first step); Unsupported with torch's reason."""
    import torch

    param = torch.zeros(1, device=device, requires_grad=True)
    param.grad = torch.zeros_like(param)
    try:
        factory([param], **kwargs).step()
    except (RuntimeError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Unsupported(f"optimizer_impl: {first}") from None


class OptimizerImpl(Knob):
    name = "optimizer_impl"
    help = "torch.optim implementation: default (torch's choice), foreach (multi-tensor) or fused (one kernel)"
    kind = "systems"
    after = ("optimizer",)  # it edits the optimizer that one chose

    def params(self, hardware):
        return [Param("optimizer_impl", "categorical", choices=CHOICES)]

    def baseline(self, hardware):
        return {"optimizer_impl": "default"}

    def apply(self, settings, plan: TrainingPlan):
        impl = settings["optimizer_impl"]
        if impl == "default":
            return
        import torch

        factory = plan.optimizer_factory or torch.optim.SGD  # what the engine builds when unset
        label = getattr(factory, "__name__", type(factory).__name__)
        if not _takes(factory, impl):
            raise Unsupported(
                f"optimizer_impl {impl}: {label} has no {impl} implementation in torch {torch.__version__}")
        kwargs = {**plan.optimizer_kwargs, impl: True}
        check_runs(factory, kwargs, plan.device)
        plan.optimizer_kwargs[impl] = True
        plan.notes["optimizer_impl"] = f"{impl} {label}"


@hookimpl
def register_knobs(register):
    register(OptimizerImpl())
