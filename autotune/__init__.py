"""autotune: find how to train a PyTorch model fastest without losing accuracy.

The public API for plugin authors and scripts lives here.
"""

from autotune.errors import AutotuneError, PluginError, RunError, SpaceError, Unsupported, UsageError
from autotune.hookspecs import hookimpl
from autotune.knob import Knob, Param, Rank, TrainingPlan

__version__ = "0.1.0"


def apply(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Apply a tuned configuration in your own script: see autotune.api.apply.

    Imported lazily so that `import autotune` stays free of torch (the terminal UI relies on it).
    """
    from autotune.api import apply as _apply

    return _apply(*args, **kwargs)


__all__ = [
    "AutotuneError",
    "Knob",
    "Param",
    "PluginError",
    "Rank",
    "RunError",
    "SpaceError",
    "TrainingPlan",
    "apply",
    "Unsupported",
    "UsageError",
    "hookimpl",
    "__version__",
]
