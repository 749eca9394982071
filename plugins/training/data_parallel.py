"""data_parallel: train one trial on several devices at once, each taking a share of every batch.

Modes:
- "ddp": torch.nn.parallel.DistributedDataParallel, one process per device. This knob asks the
  engine for the processes (`plan.processes`); the engine starts them, forms the process group
  (NCCL on CUDA, gloo on CPU), gives each a DistributedSampler shard, sums validation over them and
  keeps their stops in step. In each process this knob takes that process's share of the batch
  and wraps the model. On CUDA a trial uses every GPU its runner gave it (CUDA_VISIBLE_DEVICES;
  `--gpus-per-trial K` on `study start`, `worker` or `daemon start`), one process each. On CPU it runs
  `data_parallel_processes` processes that split the threads between them: sometimes faster than
  one process with every thread when small kernels do not scale, and the way this knob's
  multi-process path is tested on machines without GPUs. Not searched on CPU unless a space asks.
- "dp": torch.nn.DataParallel, CUDA only: one process, each batch scattered over the GPUs and the
  outputs gathered on GPU 0. Simpler and usually slower than DDP (one Python thread drives every
  GPU, everything passes through GPU 0); a study measures which wins.
- "none": one device.

`batch_size` stays the global batch: N processes train on batch_size // N samples each, so a
configuration learns the same with or without DDP (the gradient averages as many samples) and
throughput compares like with like. BatchNorm statistics are per process, as in plain DDP.

Process start-up (a fresh interpreter importing torch, then the rendezvous: a few seconds) comes
before the first step: it is in the trial's wall time, not in its train_time, because a real
training run pays it once.
"""

from autotune import Knob, Param, TrainingPlan, Unsupported, hookimpl


class DataParallel(Knob):
    name = "data_parallel"
    help = "split each batch across devices: DistributedDataParallel (ddp) or DataParallel (dp)"
    kind = "systems"

    def params(self, hardware):
        if hardware.is_cuda:
            return [Param("data_parallel", "categorical", choices=("none", "ddp", "dp"))]
        return [
            Param(
                "data_parallel", "categorical", choices=("none",), accepted=("none", "ddp"),
                help="ddp on CPU: several processes with gloo (not searched unless a space lists it)",
            ),
            Param(
                "data_parallel_processes", "int", low=2, high=max(2, hardware.cpu_count), valid=(2, 256),
                when={"data_parallel": ("ddp",)}, help="processes for ddp on CPU",
            ),
        ]

    def baseline(self, hardware):
        if hardware.is_cuda:
            return {"data_parallel": "none"}
        # used only once ddp is asked for on CPU: two processes, the fewest that split a batch
        return {"data_parallel": "none", "data_parallel_processes": 2}

    def unavailable(self, hardware):
        if hardware.is_cuda:
            return None if hardware.device_count >= 2 else "needs 2+ CUDA GPUs for this trial"
        if hardware.device_type != "cpu":
            return f"not supported on {hardware.device_type}"
        return None if hardware.cpu_count >= 2 else "needs 2+ CPU cores"

    def apply(self, settings, plan: TrainingPlan):
        mode = settings["data_parallel"]
        if mode == "dp":
            self._data_parallel(plan)
        elif mode == "ddp":
            self._distributed(settings, plan)

    def _data_parallel(self, plan: TrainingPlan) -> None:
        import torch

        count = torch.cuda.device_count() if plan.device.type == "cuda" else 0
        if count < 2:  # the fingerprint said 2+, but this process sees fewer: refuse, don't pretend
            raise Unsupported(f"data_parallel=dp needs 2+ CUDA GPUs in the trial, it sees {count}")
        plan.notes["data_parallel"] = f"dp x{count}"

        def wrap(model):
            return torch.nn.DataParallel(model, device_ids=list(range(count)), output_device=0)

        # after pruning (10) and channels_last (20), which must see the bare model; before
        # torch_compile (90), which then compiles the wrapper
        plan.transform_model(wrap, order=80)

    def _distributed(self, settings, plan: TrainingPlan) -> None:
        import torch

        if plan.rank is None:  # the launching pass: ask the engine for the processes
            if plan.device.type == "cuda":
                count = torch.cuda.device_count()
                if count < 2:
                    raise Unsupported(f"data_parallel=ddp needs 2+ CUDA GPUs in the trial, it sees {count}")
            else:
                count = settings["data_parallel_processes"]
            plan.processes = count
            plan.notes["data_parallel"] = f"ddp x{count}"
            return
        world = plan.rank.world_size
        plan.notes["data_parallel"] = f"ddp x{world}"
        plan.notes["batch_per_process"] = plan.batch_size = max(1, plan.batch_size // world)
        if plan.device.type == "cpu":
            previous = torch.get_num_threads()
            torch.set_num_threads(max(1, previous // world))
            plan.on_cleanup(lambda: torch.set_num_threads(previous))
        device_ids = [plan.device.index] if plan.device.type == "cuda" else None

        def wrap(model):
            return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

        plan.transform_model(wrap, order=80)  # same place as dp, for the same reasons


@hookimpl
def register_knobs(register):
    register(DataParallel())
