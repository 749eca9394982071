"""The Knob: one thing autotune can tune, and how a chosen value changes a training run.

A knob owns one or more settings (its `params`). The first param carries the knob's own name
(`optimizer`); the others are conditional sub-settings (`momentum` only when `optimizer` is sgd).
A knob changes a run only through `apply`, which edits a `TrainingPlan` (autotune.run.plan) before
the engine builds anything. The engine reads the plan and knows no knob by name.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from autotune.errors import UsageError
from autotune.tasks import TASKS as STUDY_TASKS

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.inference.plan import InferencePlan
    from autotune.run.plan import TrainingPlan

ParamType = Literal["int", "float", "categorical", "bool"]
KnobKind = Literal["systems", "statistical"]
# What a knob tunes: a training run (a TrainingPlan) or serving a trained model (an
# InferencePlan, autotune.inference). Training studies see only training knobs and inference
# studies only inference knobs (autotune.registry.load_registry's `task`).
KnobTask = Literal["training", "inference"]
TASKS: tuple[str, ...] = tuple(STUDY_TASKS)


@dataclass(frozen=True)
class Param:
    """One setting and its default search range.

    `low`/`high`/`log`/`step` (numbers) or `choices` (categorical) are the default search space.
    `valid` bounds what the knob accepts at all (a search space may not go outside it); for
    categoricals, `accepted` lists every value the knob takes when that is more than the default
    `choices` (fp16 runs on CPU but is not worth searching there).
    `when` makes the param conditional: `{"optimizer": ("sgd", "rmsprop")}` means it exists only
    when the `optimizer` setting is one of those values.
    """

    name: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    accepted: tuple[Any, ...] | None = None
    valid: tuple[float | None, float | None] = (None, None)
    when: dict[str, tuple[Any, ...]] | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.type == "bool" and self.choices is None:
            object.__setattr__(self, "choices", (False, True))
        if self.type in ("categorical", "bool"):
            if not self.choices:
                raise ValueError(f"param '{self.name}': a {self.type} param needs choices")
        elif self.low is None or self.high is None:
            raise ValueError(f"param '{self.name}': a {self.type} param needs low and high")

    @property
    def allowed_choices(self) -> tuple[Any, ...]:
        return self.accepted or self.choices or ()

    def active(self, settings: dict[str, Any]) -> bool:
        """Whether this param exists under the other settings (conditional params)."""
        if not self.when:
            return True
        return all(settings.get(key) in values for key, values in self.when.items())

    def coerce(self, value: Any) -> Any:
        """Turn a value (possibly a string from the command line) into this param's type.

        Raises UsageError naming the param when the value does not fit.
        """
        try:
            converted = _convert(self.type, value)
        except (TypeError, ValueError):
            raise UsageError(
                f"setting '{self.name}': expected {_describe(self)}, got {value!r}"
            ) from None
        if self.type in ("categorical", "bool"):
            allowed = self.allowed_choices
            matches = [c for c in allowed if c == converted or str(c) == str(converted)]
            if not matches:
                raise UsageError(
                    f"setting '{self.name}': {value!r} is not one of {', '.join(map(str, allowed))}"
                )
            return matches[0]
        lo, hi = self.valid
        if (lo is not None and converted < lo) or (hi is not None and converted > hi):
            raise UsageError(
                f"setting '{self.name}': {converted} is outside the accepted range "
                f"[{_fmt(lo, '-inf')}, {_fmt(hi, 'inf')}]"
            )
        return converted


def _fmt(bound: float | None, unbounded: str) -> str:
    return unbounded if bound is None else str(bound)


def _describe(param: Param) -> str:
    return {"int": "an integer", "float": "a number", "bool": "true or false"}.get(
        param.type, "one of " + ", ".join(map(str, param.allowed_choices))
    )


def _convert(type_: ParamType, value: Any) -> Any:
    if type_ == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if type_ == "int":
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        return int(str(value).strip())
    if type_ == "float":
        if isinstance(value, bool):
            raise TypeError(value)
        result = float(value)
        if not math.isfinite(result):
            raise ValueError(value)
        return result
    # categorical: keep native types (ints stay ints) but accept their string form
    if isinstance(value, str):
        text = value.strip()
        for parse in (int, float):
            try:
                return parse(text)
            except ValueError:
                pass
        return text
    return value


class Need(str, enum.Enum):
    """What a knob needs to do anything; without it the knob is left out of the search, with the
    reason, and does not touch the run."""

    CUDA = "cuda"  # a CUDA device
    SEVERAL_DEVICES = "several_devices"  # 2+ GPUs for the trial (2+ cores on CPU)
    CONVOLUTIONS = "convolutions"  # the model has Conv layers
    IMAGE_INPUTS = "image_inputs"  # the batches hold 4-D (N, C, H, W) tensors
    # autotune's training loop runs each step (a STEP handler that does the step itself: cuts a
    # batch into micro-batches); a user's own loop (--script, autotune.apply) runs its own steps
    ENGINE_LOOP = "engine_loop"
    # the training data before training starts (to trace the model); a user's own loop hands
    # autotune its model first and its data later
    TRAINING_DATA = "training_data"


@dataclass(frozen=True)
class Traits:
    """What a workload's model and data are like, as far as knobs care (autotune.workloads
    computes them once per workload; None: could not tell, nothing is left out for it)."""

    convolutional: bool | None = None
    image_inputs: bool | None = None
    # the user's own loop trains (a --script trial, autotune.apply): no STEP or BEFORE_EVAL event
    # fires and autotune holds no training data (Need.ENGINE_LOOP, Need.TRAINING_DATA)
    own_loop: bool = False


def exclusion(knob: "Knob", hardware: "Hardware", traits: Traits | None = None) -> str | None:
    """Why `knob` does nothing here (this hardware, this workload), or None when it applies: the
    one rule the search space, the settings and the engine follow."""
    reason = knob.unavailable(hardware)
    if reason is not None:
        return reason
    needs = set(knob.needs)
    if Need.CUDA in needs and not hardware.is_cuda:
        return f"needs CUDA (this machine trains on {hardware.device_type})"
    if Need.SEVERAL_DEVICES in needs:
        count = hardware.device_count if hardware.is_cuda else hardware.cpu_count
        if count < 2:
            return "needs 2+ devices for the trial"
    traits = traits or Traits()
    if Need.CONVOLUTIONS in needs and traits.convolutional is False:
        return "the workload's model has no convolutions"
    if Need.IMAGE_INPUTS in needs and traits.image_inputs is False:
        return "the workload's batches hold no 4-D (image) tensors"
    if traits.own_loop and Need.ENGINE_LOOP in needs:
        return OWN_LOOP_STEPS
    if traits.own_loop and Need.TRAINING_DATA in needs:
        return OWN_LOOP_DATA
    return None


# Why a knob is left out of a study of your own loop (--script) and refused by autotune.apply.
OWN_LOOP_STEPS = "needs autotune's training loop to run each step; your own loop (--script, autotune.apply) runs its own"
OWN_LOOP_DATA = (
    "needs the training data before training (to trace the model); your own loop (--script, autotune.apply) "
    "gives autotune the model first and its data later"
)


class Knob:
    """Base class for a tunable knob. Subclass it and register an instance from a plugin.

    Class attributes:
      name: the knob's snake_case name, the same string in spaces, database rows and the CLI.
      help: one line for `autotune plugins` and `space show`.
      kind: "systems" (no effect on what is learned) or "statistical" (changes what is learned).
      task: "training" (the default: `apply` edits a TrainingPlan) or "inference" (`apply` edits
        an InferencePlan: how a trained model is served).
      needs: what it needs to do anything (Need); without it the knob is left out, with why.
      after: names of knobs whose `apply` must run before this one's (when they are loaded);
        otherwise knobs apply in registration order.
    """

    name: str = ""
    help: str = ""
    kind: KnobKind = "systems"
    task: KnobTask = "training"
    needs: frozenset[Need] | tuple[Need, ...] = ()
    after: tuple[str, ...] = ()

    def params(self, hardware: "Hardware") -> list[Param]:
        """The knob's settings with their default search space on this hardware."""
        raise NotImplementedError

    def baseline(self, hardware: "Hardware") -> dict[str, Any]:
        """The settings of an untuned run (used where the workload's recipe says nothing)."""
        raise NotImplementedError

    def unavailable(self, hardware: "Hardware") -> str | None:
        """Why this knob does not apply on this hardware, or None when it does."""
        return None

    def apply(self, settings: dict[str, Any], plan: "TrainingPlan | InferencePlan") -> None:
        """Change the run: `settings` holds this knob's active settings, already validated. The
        plan is a TrainingPlan for a training knob, an InferencePlan for an inference knob."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Knob {self.name}>"


def apply_order(knobs: list["Knob"]) -> list["Knob"]:
    """The order knobs `apply` in: registration order, except that a knob comes after every
    loaded knob named in its `after` (names of knobs not loaded are ignored). ValueError naming
    the knobs when their `after` lists form a cycle."""
    by_name = {k.name: k for k in knobs}
    placed: list[Knob] = []
    done: set[str] = set()

    def place(knob: Knob, path: tuple[str, ...]) -> None:
        if knob.name in done:
            return
        if knob.name in path:
            cycle = " -> ".join((*path[path.index(knob.name):], knob.name))
            raise ValueError(f"knobs must apply after each other in a cycle: {cycle}")
        for name in knob.after:
            if name in by_name:
                place(by_name[name], (*path, knob.name))
        done.add(knob.name)
        placed.append(knob)

    for knob in knobs:
        place(knob, ())
    return placed
