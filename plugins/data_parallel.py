"""data_parallel: train one trial on every GPU it was given, splitting each batch between them.

What it really does: wraps the model in `torch.nn.DataParallel` (one process, one thread per GPU,
the batch scattered along dimension 0 and the outputs gathered on GPU 0). It is not
DistributedDataParallel: DDP needs one process per GPU (torch.distributed with a process group,
a DistributedSampler, each rank building its own loaders), while a trial here is one process
whose engine builds one model and one loader. DataParallel is the correct choice inside that
contract; it scales worse than DDP (the GIL, scatter/gather through GPU 0), which a study then
measures honestly as throughput. The GPUs a trial sees are those its runner gave it through
CUDA_VISIBLE_DEVICES (`autotune worker --gpus-per-trial K`).

Unverified on the machine this was written on (no GPU): see docs/distributed.md.
"""

import torch

from autotune import Knob, Param, TrainingPlan, Unsupported, hookimpl


class DataParallel(Knob):
    name = "data_parallel"
    help = "split each batch across this trial's GPUs (torch.nn.DataParallel; needs 2+ GPUs)"
    kind = "systems"

    def params(self, hardware):
        return [Param("data_parallel", "bool")]

    def baseline(self, hardware):
        return {"data_parallel": False}

    def unavailable(self, hardware):
        if not hardware.is_cuda or hardware.device_count < 2:
            return "needs 2+ CUDA GPUs for this trial"
        return None

    def apply(self, settings, plan: TrainingPlan):
        if not settings["data_parallel"]:
            return
        count = torch.cuda.device_count()
        if count < 2:  # the fingerprint said 2+, but this process sees fewer: refuse, don't pretend
            raise Unsupported(f"data_parallel needs 2+ CUDA GPUs in the trial, it sees {count}")
        plan.notes["data_parallel"] = count

        def wrap(model):
            return torch.nn.DataParallel(model, device_ids=list(range(count)), output_device=0)

        # after pruning (10) and channels_last (20), which must see the bare model; before
        # torch_compile (90), which then compiles the wrapper
        plan.transform_model(wrap, order=80)


@hookimpl
def register_knobs(register):
    register(DataParallel())
