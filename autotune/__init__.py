"""autotune: find how to train a PyTorch model fastest without losing accuracy.

The public API for plugin authors and scripts lives here. Importing it stays free of torch (the
terminal UI relies on it): `Workload` and `apply` load the torch side when first used.
"""

from __future__ import annotations

from typing import Any

from autotune.errors import AutotuneError, PluginError, RunError, SpaceError, Unsupported, UsageError
from autotune.hookspecs import hookimpl
from autotune.inference.plan import InferencePlan
from autotune.knob import Knob, Need, Param, Traits
from autotune.run.loop_events import Event
from autotune.run.plan import Rank, TrainingPlan

def apply(*args: Any, **kwargs: Any) -> Any:
    """Apply a tuned configuration in your own script: see autotune.api.apply."""
    from autotune.api import apply as _apply

    return _apply(*args, **kwargs)


def load_served(*args: Any, **kwargs: Any) -> Any:
    """The served model `autotune study export NAME --model OUT` wrote: see
    autotune.inference.export.load_served."""
    from autotune.inference.export import load_served as _load_served

    return _load_served(*args, **kwargs)


def session() -> Any:
    """This trial's session when autotune runs your script: see autotune.sessions."""
    from autotune.sessions import session as _session

    return _session()


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the installed distribution; importlib.metadata costs 30 ms
        import importlib.metadata

        try:
            return importlib.metadata.version("autotune")
        except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
            return "0+unknown"
    if name == "Workload":
        from autotune.workloads import Workload

        return Workload
    if name == "LoopState":
        from autotune.run.loop_state import LoopState

        return LoopState
    raise AttributeError(f"module 'autotune' has no attribute {name!r}")


__all__ = [
    "AutotuneError",
    "Event",
    "InferencePlan",
    "LoopState",
    "Knob",
    "Need",
    "Traits",
    "Param",
    "PluginError",
    "Rank",
    "RunError",
    "SpaceError",
    "TrainingPlan",
    "Unsupported",
    "UsageError",
    "Workload",
    "apply",
    "load_served",
    "session",
    "hookimpl",
    "__version__",
]
