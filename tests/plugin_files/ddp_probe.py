"""Test plugin: knob 'ddp_probe' reports what each process of a data-parallel run saw.

In every process of a multi-process run it writes `$DDP_PROBE_DIR/pid<rank>` at once and
`rank<rank>.json` when the run ends: the process group's size, the model's wrapper, the sum of the
first training batch (which shard it got) and the sum of the final weights (whether the processes
stayed in step). With `ddp_probe=raise` or `exit`, process 1 fails on its first batch.
"""

import json
import os
from pathlib import Path

import torch.distributed as dist

from autotune import Knob, Param, hookimpl


class DdpProbe(Knob):
    name = "ddp_probe"
    help = "test knob: records what each data-parallel process saw"

    def params(self, hardware):
        return [Param("ddp_probe", "categorical", choices=("record", "raise", "exit"))]

    def baseline(self, hardware):
        return {"ddp_probe": "record"}

    def apply(self, settings, plan):
        if plan.rank is None:
            return
        mode, rank = settings["ddp_probe"], plan.rank.rank
        out = Path(os.environ["DDP_PROBE_DIR"])
        (out / f"pid{rank}").write_text(str(os.getpid()))
        record = {
            "rank": rank, "world_size": plan.rank.world_size, "group_size": dist.get_world_size(),
            "backend": dist.get_backend(), "batch": plan.batch_size, "pid": os.getpid(),
        }
        state = {}

        def capture(model):
            record["wrapper"] = type(model).__name__
            state["model"] = model

        def first_batch(inputs):
            if "first_batch" not in record:
                record["first_batch"] = float(inputs.double().sum())
                if rank == 1 and mode == "raise":
                    raise RuntimeError("ddp_probe: deliberate failure in process 1")
                if rank == 1 and mode == "exit":
                    os._exit(3)
            return inputs

        def write():
            model = state.get("model")
            if model is not None:
                record["param_sum"] = sum(float(p.detach().double().sum()) for p in model.parameters())
            (out / f"rank{rank}.json").write_text(json.dumps(record))

        plan.transform_model(capture, order=85)  # after the DDP wrap (80)
        plan.transform_inputs(first_batch)
        plan.on_cleanup(write)


@hookimpl
def register_knobs(register):
    register(DdpProbe())
