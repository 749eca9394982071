"""Test plugin: registers knob 'shared_knob', as dup_b.py does too."""

from autotune import Knob, Param, hookimpl


class SharedKnob(Knob):
    name = "shared_knob"
    help = "test knob claimed by two plugins"

    def params(self, hardware):
        return [Param("shared_knob", "bool")]

    def baseline(self, hardware):
        return {"shared_knob": False}

    def apply(self, settings, plan):
        pass


@hookimpl
def register_knobs(register):
    register(SharedKnob())
