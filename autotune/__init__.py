"""autotune: find how to train a PyTorch model fastest without losing accuracy.

The public API for plugin authors and scripts lives here.
"""

from autotune.errors import AutotuneError, PluginError, RunError, SpaceError, Unsupported, UsageError
from autotune.hookspecs import hookimpl
from autotune.knob import Knob, Param, TrainingPlan

__version__ = "0.1.0"

__all__ = [
    "AutotuneError",
    "Knob",
    "Param",
    "PluginError",
    "RunError",
    "SpaceError",
    "TrainingPlan",
    "Unsupported",
    "UsageError",
    "hookimpl",
    "__version__",
]
