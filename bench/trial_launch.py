"""Trial launch latency: how long from "launch a trial" to the trial process running user code.

Every trial runs in its own process, forked from autotune's forkserver (torch and the engine are
preloaded there, see autotune/launch/trial_process.py). This measures, for a trivial trial (a tiny
import-path workload, budget steps=1):

- cold: a fresh interpreter (`python -c ...`) that imports autotune.launch.trial_process and launches one
  trial. Timed from just before the interpreter is started until the workload factory (user code)
  runs in the trial process, so it includes the interpreter start and the forkserver's boot.
- warm: the same parent then launches N more trials; timed from `launch()` to user code.

For each launch it also records `TrialOutcome.launch_seconds` (the fork itself), the time to the
child's first message (its first progress report, after one training step) and the whole trial.
Clocks: user code writes `time.time()` to a file named by an environment variable the request
carries (TrialRequest.env), so parent and child timestamps compare directly.

Reproduce (prints JSON; figures are seconds):

    AUTOTUNE_HOME=$(mktemp -d) .venv/bin/python bench/trial_launch.py --cold 3 --warm 10

The target is a warm median of at most 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAMP_ENV = "AUTOTUNE_BENCH_STAMP"


def tiny() -> Any:
    """The trivial workload: a 2-layer MLP on 64 random 4-vectors. Records when it is built."""
    stamp = os.environ.get(STAMP_ENV)
    if stamp:
        Path(stamp).write_text(repr(time.time()))
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from autotune.workloads import Workload

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 4, generator=generator)
    data = TensorDataset(inputs, (inputs.sum(dim=1) > 0).long())
    return Workload(
        name="bench-tiny",
        model_fn=lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)),
        train_data=data, val_data=data, input_shape=(4,),
    )


def launch_once(stamp_dir: str, index: int) -> dict[str, float]:
    """Launch one trivial trial from this process and time it."""
    from autotune.launch.requests import TrainingRequest
    from autotune.launch.trial_process import launch

    stamp = Path(stamp_dir) / f"{index}.stamp"
    first: list[float] = []

    def on_message(_payload: Any) -> Any:
        if not first:
            first.append(time.time())
        return False

    request = TrainingRequest(
        workload="trial_launch:tiny", overrides={"batch_size": 32, "workers": 0}, budget={"steps": 1},
        env={STAMP_ENV: str(stamp)}, log_path=str(Path(stamp_dir) / f"{index}.log"),
    )
    started = time.time()
    outcome = launch(request, on_progress=on_message, on_eval=on_message)
    ended = time.time()
    if outcome.status != "ok":
        raise SystemExit(f"bench trial {index} did not run: {outcome.status}: {outcome.error}\n{outcome.log_tail}")
    user_code = float(stamp.read_text())
    return {
        "started": started,
        "to_user_code": user_code - started,
        "launch_seconds": outcome.launch_seconds,
        "to_first_message": (first[0] - started) if first else float("nan"),
        "trial_total": ended - started,
    }


def child(warm: int) -> None:
    """Body of the fresh interpreter: one cold launch, then `warm` more; JSON on stdout."""
    sys.path.insert(0, str(HERE))  # the workload's import path: trial_launch:tiny
    with tempfile.TemporaryDirectory() as stamp_dir:
        runs = [launch_once(stamp_dir, i) for i in range(1 + warm)]
    print(json.dumps(runs))


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=3, help="fresh interpreters to start (default 3)")
    parser.add_argument("--warm", type=int, default=10, help="launches after the first, per interpreter (default 10)")
    args = parser.parse_args()
    if not os.environ.get("AUTOTUNE_HOME"):
        raise SystemExit("set AUTOTUNE_HOME to a scratch directory, e.g. AUTOTUNE_HOME=$(mktemp -d)")

    cold_total: list[float] = []
    cold_in_process: list[float] = []
    warm: dict[str, list[float]] = {"to_user_code": [], "launch_seconds": [], "to_first_message": [],
                                    "trial_total": []}
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import trial_launch; trial_launch.child({args.warm})"
    for _ in range(args.cold):
        began = time.time()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"bench child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        runs = json.loads(proc.stdout.strip().splitlines()[-1])
        first = runs[0]
        cold_total.append(first["started"] + first["to_user_code"] - began)
        cold_in_process.append(first["to_user_code"])
        for run in runs[1:]:
            for key in warm:
                warm[key].append(run[key])

    report = {
        "cold": {
            "process_start_to_user_code": stats(cold_total),
            "launch_to_user_code": stats(cold_in_process),
        },
        "warm": {key: stats(values) for key, values in warm.items()},
        "target": {"warm_median_to_user_code_max": 0.3,
                   "met": statistics.median(warm["to_user_code"]) <= 0.3 if warm["to_user_code"] else None},
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
