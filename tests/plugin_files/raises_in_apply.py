"""Test plugin: a knob whose apply raises, so every trial of every study that loads it fails."""

from autotune import Knob, Param, hookimpl


class Exploding(Knob):
    name = "exploding"
    help = "raises in apply (tests)"

    def params(self, hardware):
        return [Param("exploding", "bool")]

    def baseline(self, hardware):
        return {"exploding": False}

    def apply(self, settings, plan):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0")


@hookimpl
def register_knobs(register):
    register(Exploding())
