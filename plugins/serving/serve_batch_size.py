"""serve_batch_size: the batch size throughput is measured at. Latency is always measured at
batch 1, so it does not change an inference study's objective: it decides the throughput and
the peak memory each trial reports (pin it in a space to compare throughput at one size)."""

from __future__ import annotations

from autotune import InferencePlan, Knob, Param, hookimpl


class ServeBatchSize(Knob):
    name = "serve_batch_size"
    help = "samples a call when throughput is measured (latency is at batch 1)"
    kind = "systems"
    task = "inference"

    def params(self, hardware):
        high = 1024 if hardware.is_cuda else 256
        return [Param("serve_batch_size", "int", low=1, high=high, log=True, valid=(1, 65536))]

    def baseline(self, hardware):
        return {"serve_batch_size": 64}

    def apply(self, settings, plan: InferencePlan):
        plan.batch_size = settings["serve_batch_size"]


@hookimpl
def register_knobs(register):
    register(ServeBatchSize())
