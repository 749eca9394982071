"""Errors that reach the user as one line.

`UsageError` is bad input (exit code 2); `RunError` is a run that failed and `DataError` a file
that cannot be read (exit code 1).
Anything else is a bug and keeps its traceback under `--debug`.
"""


class AutotuneError(Exception):
    """Base of every error autotune reports as a single line."""

    exit_code = 2


class UsageError(AutotuneError):
    """Bad input: an unknown name, a malformed file, a value of the wrong type."""


class PluginError(UsageError):
    """A plugin failed to load or raised inside a hook; the message names the plugin."""


class SpaceError(UsageError):
    """A search space is malformed; the message names file, knob and problem."""


class RunError(AutotuneError):
    """A training run failed."""

    exit_code = 1


class DataError(AutotuneError):
    """A file autotune keeps cannot be read: corrupt, truncated, or not what it should be. The
    message names the file; nothing is overwritten."""

    exit_code = 1


class Unsupported(AutotuneError):
    """A setting this device cannot run (e.g. fp16 autocast where there is no fp16 support)."""

    exit_code = 1
