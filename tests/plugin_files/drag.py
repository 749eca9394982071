"""Plugin: knob `drag`, a systems knob that costs time and changes nothing learned.

`drag_ms` milliseconds of sleep after every optimizer step (AFTER_STEP, counted as training
time): the step runs slower by that, the weights are untouched. The baseline drags 20 ms, like a
recipe that synchronises or logs after every step; 0 is faster and 40 slower. A sleep, not work:
the difference stands out of a busy machine's noise. What the answer's checks must see: the
systems stage keeps 0, and a trial's 40 is a rider.
"""

import time

from autotune import Event, Knob, Param, hookimpl


class Drag(Knob):
    name = "drag"
    help = "sleep this many milliseconds after every step (a test's systems knob)"
    kind = "systems"

    def params(self, hardware):
        return [Param("drag_ms", "int", low=0, high=40)]

    def baseline(self, hardware):
        return {"drag_ms": 20}

    def apply(self, settings, plan):
        delay = int(settings["drag_ms"]) / 1000.0
        if delay:
            plan.on(Event.AFTER_STEP, lambda state, loss: time.sleep(delay))


@hookimpl
def register_knobs(register):
    register(Drag())
