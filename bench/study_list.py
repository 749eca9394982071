"""How fast the read-only commands answer: `autotune study list` over a home with 20 studies.

    python bench/study_list.py [--studies 20] [--trials 40] [--repeats 5]

Builds a throwaway AUTOTUNE_HOME holding `--studies` finished studies of `--trials` trials each
(real Optuna SQLite storage and autotune's local store, as a study run leaves them), then runs
`autotune study list` (and `study show` of one study) as a user would, in a fresh process each
time, `--repeats` times, and prints the median and the spread with the load average and the CPU.
It also checks that importing the command module loads no torch module (`python -X importtime`).
The goal: a median under 0.5 s for `study list`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

ROOT = Path(__file__).resolve().parent.parent


def build_home(home: Path, studies: int, trials: int) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    from autotune.storage.local import Store

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{home / 'studies.db'}"
    dists = {"batch_size": IntDistribution(16, 512, log=True), "learning_rate": FloatDistribution(1e-4, 1, log=True),
             "optimizer": CategoricalDistribution(["sgd", "adam", "adamw"])}
    store = Store(home / "autotune.db")
    for s in range(studies):
        name = f"study-{s:02d}"
        study = optuna.create_study(study_name=name, storage=url, direction="minimize")
        study.set_user_attr("autotune", {"objective": "time-to-accuracy", "workload": "digits", "n_trials": trials})
        batch = []
        for n in range(trials):
            params = {"batch_size": 16 * (1 + n % 8), "learning_rate": 0.01 * (1 + n % 5), "optimizer": "adam"}
            state = TrialState.COMPLETE if n % 3 else TrialState.PRUNED
            batch.append(create_trial(
                state=state, value=10.0 + (n * 7919 % 97) / 10 if state == TrialState.COMPLETE else None,
                params=params, distributions=dists,
                user_attrs={"settings": params, "autotune_status": "ok" if n % 3 else "pruned",
                            "throughput": 1000.0 + n, "log_tail": "x" * 2000, "baseline": n == 0},
            ))
        study.add_trials(batch)
        store.put_study(name, storage=url, workload="digits", space="quick", objective="time-to-accuracy",
                        n_trials=trials, spec={}, status="finished")
    store.close()


def timed(cmd: list[str], env: dict[str, str], repeats: int) -> list[float]:
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="autotune-bench-list-") as tmp:
        home = Path(tmp)
        build_home(home, args.studies, args.trials)
        env = dict(os.environ, AUTOTUNE_HOME=str(home))
        autotune = [sys.executable, "-m", "autotune.cli"]
        load_before = os.getloadavg()
        timed(autotune + ["study", "list"], env, 1)  # warm the page cache: later runs are the steady case
        listing = timed(autotune + ["study", "list"], env, args.repeats)
        show = timed(autotune + ["study", "show", "study-00"], env, args.repeats)
        help_ = timed(autotune + ["--help"], env, args.repeats)
        load_after = os.getloadavg()
        imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import autotune.commands.study"],
                                 env=env, capture_output=True, text=True).stderr
    torch_modules = [line.rsplit("|", 1)[-1].strip() for line in imports.splitlines()
                     if line.rsplit("|", 1)[-1].strip().split(".")[0] in ("torch", "torchvision")]

    def row(label: str, walls: list[float]) -> str:
        return f"| {label} | {statistics.median(walls):.3f} s | {min(walls):.3f}-{max(walls):.3f} s |"

    print(f"home: {args.studies} studies x {args.trials} trials; {args.repeats} fresh processes each")
    print(f"CPU: {common.cpu_line()}; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after; Python {sys.version.split()[0]}")
    print("| command | median | min-max |\n|---|---|---|")
    print(row("autotune study list", listing))
    print(row("autotune study show study-00", show))
    print(row("autotune --help", help_))
    print(f"torch modules imported by `import autotune.commands.study`: {len(torch_modules)}")
    verdict = statistics.median(listing) < 0.5 and not torch_modules
    print("goal (study list median < 0.5 s, no torch): " + ("met" if verdict else "NOT met"))
    raise SystemExit(0 if verdict else 1)


if __name__ == "__main__":
    main()
