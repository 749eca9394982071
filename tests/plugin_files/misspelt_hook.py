"""Test plugin with a misspelt hook: `register_knob` (singular) is not one of autotune's hooks."""

from autotune import hookimpl


@hookimpl
def register_knob(register):
    pass
