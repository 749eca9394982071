"""The hooks a plugin can implement. Few, typed, each documented in docs/plugins.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    from autotune.knob import Knob
    from autotune.workloads import Workload

hookspec = pluggy.HookspecMarker("autotune")
hookimpl = pluggy.HookimplMarker("autotune")


@hookspec
def register_knobs(register: Callable[["Knob"], None]) -> None:
    """Register knobs by calling ``register(knob)`` once per Knob instance."""


@hookspec
def register_workloads(register: Callable[[str, Callable[[], "Workload"]], None]) -> None:
    """Register workloads by calling ``register(name, factory)``; ``factory()`` returns a Workload."""
