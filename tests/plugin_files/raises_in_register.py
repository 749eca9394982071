"""Test plugin whose register_knobs hook raises."""

from autotune import hookimpl


@hookimpl
def register_knobs(register):
    raise ValueError("register exploded")
