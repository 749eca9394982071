"""What both adapters share: the knobs' plan for the user's model, the refusal of a setting the
framework has no place for, the DataLoader settings, and the meter that counts the framework's
optimizer steps for the session.

The session API (autotune.sessions) measures a step when the script calls `tuned.step(loss)`;
a framework's Trainer steps its own optimizer, so `StepMeter` tells the session about each step
the framework took through the session's public calls for a loop it does not run
(`setup_started`, `training_started`, `step_taken`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from autotune.api import plan_for
from autotune.errors import Unsupported
from autotune.hardware import detect
from autotune.knob import Traits, exclusion
from autotune.registry import load_registry
from autotune.run.local import plain
from autotune.run.measure import peak_memory
from autotune.settings import settings_index
from autotune.workloads import script_workload

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.sessions import Session

# Why a knob is refused by every adapter; each adapter adds its own reasons.
REFUSED = {
    "pruning": "unstructured pruning zeroes weights and masks their gradients inside autotune's own step; "
               "the framework's optimizer step would let them grow back",
    "structured_pruning": "channel pruning rebuilds the model before autotune's loop builds the optimizer; "
                          "the framework builds and checkpoints the model itself",
    "channels_last": "the framework moves each batch to the device itself, so the inputs would stay NCHW",
    "data_parallel": "a --script trial is one process: use the framework's own strategy for several devices",
    "data_parallel_processes": "a --script trial is one process",
}
NO_PLACE = "the framework has no place for this knob"


def current(session: "Session | None") -> "Session":
    """`session`, or this trial's (autotune.session(): by hand, the baseline's)."""
    if session is not None:
        return session
    from autotune.sessions import session as this_trials

    return this_trials()


class Adapted:
    """One trial's settings made ready for a framework: the knobs' plan for `model` (which has
    already applied the process-wide knobs: threads, matmul_precision, cudnn_benchmark), the
    refusals, the meter and the notes the trial records."""

    def __init__(self, framework: str, session: "Session", model: torch.nn.Module, handled: set[str],
                 refused: dict[str, str], owned: set[str]) -> None:
        """`handled`: the settings the adapter takes; `owned`: those of them the framework applies
        itself (its own accumulation, scheduler, compile), kept out of the knobs' plan so that
        nothing is applied twice; `refused`: why the framework cannot take a setting."""
        self.framework, self.session = framework, session
        self.settings = dict(session.settings)
        self.registry = session.registry or load_registry()
        self.notes: dict[str, Any] = {}
        # set-up starts where session.prepare() starts it: the knobs' plan, then the model
        session.setup_started()
        hardware = session.hardware or detect((session.device or "").split(":")[0] or None)
        index = settings_index(self.registry, hardware)
        whys = self.refusals(model, hardware, index, handled, {**REFUSED, **refused})
        self._refuse(hardware, index, whys)
        session.result.refuses = {key: f"the {framework} adapter cannot apply it: {why}" for key, why in whys.items()}
        planned = {k: v for k, v in self.settings.items() if k not in owned}
        self.plan = plan_for(planned, model, registry=self.registry, hardware=hardware, device=session.device)
        self.device = self.plan.device
        self.meter = StepMeter(session, self.device)

    def refusals(self, model: torch.nn.Module, hardware: "Hardware", index: dict[str, Any], handled: set[str],
                 refused: dict[str, str]) -> dict[str, str]:
        """Every setting the framework cannot take, whatever its value, and why: what the
        baseline declares, so that the study searches none of them. A knob that does nothing
        for this model or hardware (channels_last on an MLP) is not one: the plan leaves it out
        and notes why, as the session does (autotune.api.plan_for)."""
        traits = Traits(convolutional=script_workload("user", model).traits().convolutional)
        return {key: refused.get(key, NO_PLACE) for key, (knob, _) in index.items()
                if key not in handled and exclusion(knob, hardware, traits) is None}

    def _refuse(self, hardware: "Hardware", index: dict[str, Any], whys: dict[str, str]) -> None:
        """Unsupported for the first of `whys` this trial sets away from its baseline, before
        any knob acts."""
        for key in sorted(whys):
            if key in self.settings and self.settings[key] != index[key][0].baseline(hardware).get(key):
                self.refuse(key, whys[key])

    def refuse(self, key: str, why: str) -> None:
        """Unsupported, one line naming the setting and why: the study records the trial as
        `unsupported here: ...` and goes on."""
        raise Unsupported(f"{self.framework} adapter: {key}={self.settings[key]!r} cannot be applied: {why}")

    def split_batch(self) -> tuple[int, int]:
        """(rows per loader batch, batches accumulated per optimizer step): `batch_size` stays the
        samples of one step, cut into `micro_batches` loader batches."""
        batch, parts = int(self.settings.get("batch_size", 64)), int(self.settings.get("micro_batches", 1))
        parts = max(1, min(parts, batch))
        if batch % parts:
            self.notes["micro_batch_rows"] = f"{batch // parts} x {parts} = {batch // parts * parts} samples a step"
        return batch // parts, parts

    def loader_kwargs(self, train: bool = True) -> dict[str, Any]:
        """The trial's DataLoader settings: batch_size (a micro-batch's when the framework
        accumulates them), num_workers, persistent_workers, prefetch_factor, pin_memory."""
        options = dict(self.plan.loader)
        options.setdefault("pin_memory", False)
        if train:
            options["batch_size"] = self.split_batch()[0]
        return options

    def budget_steps(self) -> int | None:
        budget = self.session.budget
        return budget.steps if budget is not None else None

    def budget_epochs(self) -> int | None:
        budget = self.session.budget
        return budget.epochs if budget is not None else None

    def report(self, metrics: dict[str, float]) -> bool:
        """A validation to the session; True when training should stop."""
        stop = self.session.report(metrics)
        self.meter.validated()
        return stop

    def record(self, mapped: dict[str, Any]) -> None:
        """What the framework was given, in the trial's notes (`trial run`, `study show`)."""
        self.notes[self.framework] = ", ".join(f"{k}={v!r}" for k, v in sorted(mapped.items()))

    def close(self) -> None:
        """The plan's notes and the peak memory onto the trial; the process-wide knobs undone."""
        result = self.session.result
        result.notes = plain({**self.plan.notes, **self.notes})
        result.peak_memory_bytes = peak_memory(self.device)
        for cleanup in self.plan.cleanups:
            cleanup()
        self.plan.cleanups.clear()


class StepMeter:
    """Counts the framework's optimizer steps into the session, as `tuned.step` counts a
    script's: the wait for the step's first batch (since the last step or validation ended) is
    data loading, from its arrival to the step's end is the step."""

    def __init__(self, session: "Session", device: torch.device) -> None:
        self.session, self.device = session, device
        self.last_end: float | None = None
        self.arrived: float | None = None
        self.wait = 0.0
        self.rows = 0

    def started(self, steps_per_epoch: int | None) -> None:
        """Training starts (set-up is over); an epoch is `steps_per_epoch` optimizer steps."""
        self.session.training_started(steps_per_epoch)
        self.last_end = time.perf_counter()

    def batch(self, rows: int) -> None:
        """A batch (the step's first, or a later micro-batch of it) arrived."""
        now = time.perf_counter()
        if self.arrived is None:
            self.arrived, self.rows = now, 0
            self.wait = now - (self.last_end if self.last_end is not None else now)
        self.rows += rows

    def stepped(self, loss: torch.Tensor | None = None) -> None:
        """The optimizer stepped: one step of the budget."""
        if self.arrived is None:
            self.batch(0)
        assert self.arrived is not None
        self.session.step_taken(self.arrived, self.rows, self.wait, loss, self.device)
        self.arrived, self.last_end = None, time.perf_counter()

    def validated(self) -> None:
        """A validation ended: the wait for the next batch starts now."""
        self.last_end = time.perf_counter()
