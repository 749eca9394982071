"""The training engine: one real, measured training run of a workload under resolved settings.

Its parts: the plan (autotune.run.plan) knobs edit, the loop (autotune.run.loop) that trains one
process, the data-parallel launcher (autotune.run.distributed) and the trial process that isolates
a run (autotune.launch.trial_process).

What is measured, and how:
- throughput: samples / seconds over the timed steps, where a step's time runs from asking the
  DataLoader for a batch to the optimizer step finishing on the device. It includes data loading
  (and DataLoader worker start-up at each epoch) and excludes the first `warmup_steps` steps and
  validation.
- step_time_p50/p95: compute time per timed step (batch on device -> optimizer step done).
- data_wait_fraction: time waiting for batches / (waiting + compute) over timed steps.
- train_time / time_to_target: all training time from the first step, warm-up and compilation
  included (they are real costs), validation excluded.
- val_time: time spent validating (the intermediate validations and the final one); the rest of
  wall_time - train_time is building the model, loaders and optimizer, and tearing them down.
- DataLoader workers keep prefetching while training pauses for validation, which would make
  the batches after a validation look free. The steps that consume those batches (workers x
  prefetch_factor of them) are charged at least the median data wait of the steps just before
  the pause, so workers are credited only for the overlap they give during training. What they
  are charged is taken off the validation's time (never more than it lasted): train_time +
  val_time never exceeds the time that passed.
- projected_time_to_target: time to target as measured factors, steps x the steady (median)
  step + one-time costs (autotune.run.projection); setup_time, one_time and step_time are its
  parts. The time-to-accuracy objective minimizes it.
- machine: the load average at the end and the CPU steal during the run, to judge its noise by.
- peak_memory_bytes: the CUDA allocator peak on GPU; the process peak RSS elsewhere (a fresh
  process per trial gives a clean figure; within one process it is the lifetime peak).
- data-parallel runs (several processes, autotune.run.distributed): samples and throughput count every
  process's samples, times are the first process's, validation is summed over the processes,
  and peak memory is the largest of any one process (each has its own device).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from autotune.budget import Budget
from autotune.run.distributed import run_in_processes
from autotune.run.local import build_plan, run_here
from autotune.run.measure import MachineLoad, nonzero_fraction, seed_everything
from autotune.run.types import EvalPoint, Progress, RunOptions, RunResult

if TYPE_CHECKING:
    from autotune.hardware import Hardware
    from autotune.registry import Registry
    from autotune.workloads import Workload

__all__ = [
    "Budget", "EvalPoint", "Progress", "RunOptions", "RunResult", "build_plan", "nonzero_fraction", "run",
    "seed_everything",
]


def run(
    workload: "Workload",
    settings: dict[str, Any],
    registry: "Registry",
    hardware: "Hardware",
    budget: Budget,
    *,
    device: str | None = None,
    options: RunOptions | None = None,
    on_eval: Callable[[EvalPoint], bool | None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    """Train `workload` under `settings` for `budget` and measure it.

    When a knob asks for several processes (data-parallel training), the run happens in that many
    new processes (autotune.run.distributed) and this returns the first one's result.

    `on_eval` is called after each intermediate validation; returning True stops the run as
    "pruned". Failures inside training come back as a RunResult with status "failed" / "oom" /
    "unsupported" and the exception's message, never as an exception.
    """
    options = options or RunOptions()

    def spread(processes: int) -> RunResult:
        return run_in_processes(processes, workload, settings, registry, hardware, budget, options, on_eval,
                                on_progress)

    load = MachineLoad()
    result = run_here(
        workload, settings, registry, hardware, budget, options, device=device, on_eval=on_eval,
        on_progress=on_progress, spread=spread,
    )
    result.machine = load.finish()
    return result
