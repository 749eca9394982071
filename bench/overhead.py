"""Overhead: how much of a study's wall time is spent training and validating, and what the rest
(launching trial processes, Optuna storage, sampling) costs.

Reproduce (full ~2.5 min on a busy 2-core CPU; --quick ~1 min):

    .venv/bin/python bench/overhead.py [--quick] [--out DIR]

1. A real study: `digits`, `cpu` space, objective throughput, per-trial budget 10 s of training
   (--budget-seconds 10), so every trial trains >= 10 s (throughput trials are never pruned);
   no confirmation. Its wall time W runs from `runner.open()` to the end of `runner.run()`; the
   trial launcher is NOT warmed up first (a real `autotune study start` pays that too). From each
   trial's user attributes and Optuna timestamps:
   - train = `train_time` (engine: all training steps incl. data loading and warm-up);
   - validation+setup = `wall_time` - `train_time`: the rest of engine.run, i.e. the validation
     passes (`val_time`) plus building the model, optimizer and DataLoaders and tearing them
     down (setup = `wall_time` - `train_time` - `val_time`);
   - per-trial overhead = Optuna duration (datetime_start -> datetime_complete) - `wall_time`:
     process launch, the child's imports / registry / dataset load, result transfer, recording;
   - between trials = W - sum of durations: sampler bookkeeping outside trials, callbacks,
     study creation and the baseline enqueue, etc.
   Inside fraction = (train + validation+setup) / W, i.e. sum(`wall_time`) / W; train-only
   fraction = sum(`train_time`) / W.
   Every call the study makes on its Optuna storage object (RDBStorage) is timed too (sum per
   trial); calls made while a trial trains overlap training and do not add to W.
2. Storage loop: the storage setup of autotune.storage.rdb.open_storage (SQLite + WAL, 30 s timeout,
   heartbeats) in a scratch file; N trials of ask + the study's params + 20 set_user_attr + 4
   reports + tell, with RandomSampler (storage cost) and TPESampler (storage + sampling).
3. Trial launch latency cold vs warm, from bench/trial_launch.py when it is present.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from typing import Any

import common

WORKLOAD = "digits"
STORAGE_METHODS = (
    "create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials", "get_n_trials",
    "get_best_trial", "get_trial_id_from_study_id_trial_number", "get_study_user_attrs",
    "get_study_system_attrs", "set_study_user_attr", "set_study_system_attr", "record_heartbeat",
    "get_study_directions", "get_study_id_from_name", "get_all_studies", "check_trial_is_updatable",
    "get_trial_params", "get_trial_user_attrs", "get_trial_system_attrs", "get_trial_number_from_id",
)


class StorageTimer:
    """Wraps a storage object's methods to sum the time spent in each (thread-safe)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def install(self, prepared: Any) -> None:
        storage = prepared.storage
        for name in STORAGE_METHODS:
            method = getattr(storage, name, None)
            if method is None:
                continue

            def timed(*args: Any, __method: Any = method, __name: str = name, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return __method(*args, **kwargs)
                finally:
                    with self.lock:
                        self.seconds[__name] += time.perf_counter() - t0
                        self.calls[__name] += 1

            setattr(storage, name, timed)

    def total(self, exclude: tuple[str, ...] = ("record_heartbeat",)) -> float:
        return sum(v for k, v in self.seconds.items() if k not in exclude)


def study_overhead(quick: bool, seed: int) -> dict[str, Any]:
    from autotune.spec import StudySpec

    n_trials = 3 if quick else 8
    spec = StudySpec(name="bench-overhead", workload=WORKLOAD, objective="throughput", n_trials=n_trials,
                     budget={"seconds": 10}, seed=seed, confirm=0)
    timer = StorageTimer()
    common.log(f"study: {WORKLOAD}, throughput, {n_trials} trials of 10 s training each")
    ran = common.run_study(spec, instrument=timer.install)
    trials = []
    for t in ran["study"].get_trials(deepcopy=False):
        attrs = t.user_attrs
        if t.duration is None or attrs.get("wall_time") is None:
            continue
        duration = t.duration.total_seconds()
        trials.append({
            "number": t.number, "state": t.state.name, "duration": duration,
            "train": attrs["train_time"], "validation_setup": attrs["wall_time"] - attrs["train_time"],
            "validation": attrs.get("val_time") or 0.0,
            "engine_wall": attrs["wall_time"], "per_trial_overhead": duration - attrs["wall_time"],
            "settings": {k: attrs.get("settings", {}).get(k) for k in ("batch_size", "workers", "threads", "precision")},
        })
    wall = ran["wall"]
    train = sum(t["train"] for t in trials)
    engine = sum(t["engine_wall"] for t in trials)
    durations = sum(t["duration"] for t in trials)
    storage = timer.total()
    # The first trial also boots the forkserver (imports torch once per runner process); the
    # steady state leaves that one-time cost out: what each further trial costs.
    rest = [t["per_trial_overhead"] for t in trials[1:]] or [t["per_trial_overhead"] for t in trials]
    boot = trials[0]["per_trial_overhead"] - statistics.median(rest) if trials else 0.0
    steady = engine / (wall - boot)
    return {
        "n_trials": len(trials), "wall": wall, "open_seconds": ran["open_seconds"], "trials": trials,
        "train": train, "validation_setup": engine - train, "per_trial_overhead": durations - engine,
        "validation": sum(t["validation"] for t in trials),
        "between_trials": wall - durations,
        "inside_fraction": engine / wall, "train_fraction": train / wall,
        "forkserver_boot": boot, "inside_fraction_steady": steady,
        "min_trial_train": min(t["train"] for t in trials),
        "per_trial_overhead_median": statistics.median(t["per_trial_overhead"] for t in trials),
        "per_trial_overhead_first": trials[0]["per_trial_overhead"] if trials else None,
        "storage_seconds_total": storage, "storage_seconds_per_trial": storage / max(1, len(trials)),
        "storage_calls": dict(timer.calls), "storage_by_method": dict(timer.seconds),
    }


def storage_loop(n: int) -> dict[str, Any]:
    import optuna

    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.space import load_space
    from autotune.storage.rdb import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space("cpu", load_registry(), detect())
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, sampler in (("random", optuna.samplers.RandomSampler(seed=0)),
                               ("tpe", optuna.samplers.TPESampler(seed=0))):
            storage = open_storage(f"sqlite:///{tmp}/{label}.db")
            study = optuna.create_study(study_name=label, storage=storage, sampler=sampler,
                                        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=4))
            times = []
            warnings.filterwarnings("ignore", message="Heartbeat of storage")  # ask/tell, as the study's objective
            for i in range(n):
                t0 = time.perf_counter()
                trial = study.ask()
                space.suggest(trial)
                for k in range(20):
                    trial.set_user_attr(f"attr{k}", float(k))
                for step in range(4):
                    trial.report(0.5 / (step + 1), step)
                study.tell(trial, float(i % 7))
                times.append(time.perf_counter() - t0)
            out[label] = {"per_trial": common.stats(times), "n": n}
            common.log(f"  storage loop ({label} sampler): median {statistics.median(times) * 1000:.1f} ms per trial")
    return out


def launch_latency(quick: bool) -> dict[str, Any]:
    script = common.HERE / "trial_launch.py"
    if not script.exists():
        return {"skipped": "bench/trial_launch.py is not present"}
    cold, warm = (2, 5) if quick else (3, 10)
    common.log(f"trial launch latency: bench/trial_launch.py --cold {cold} --warm {warm}")
    proc = subprocess.run([sys.executable, str(script), "--cold", str(cold), "--warm", str(warm)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"skipped": f"bench/trial_launch.py failed ({proc.returncode}): {proc.stderr[-500:]}"}
    text = proc.stdout
    return json.loads(text[text.index("{"):])


def markdown(data: dict[str, Any]) -> str:
    s = data["study"]
    rows = [
        ["training (`train_time`)", f"{s['train']:.1f}", f"{100 * s['train'] / s['wall']:.1f}%"],
        ["validation + run setup (`wall_time` - `train_time`)", f"{s['validation_setup']:.1f}",
         f"{100 * s['validation_setup'] / s['wall']:.1f}%"],
        ["  of which validation (`val_time`)", f"{s['validation']:.1f}", f"{100 * s['validation'] / s['wall']:.1f}%"],
        ["  of which run setup and teardown", f"{s['validation_setup'] - s['validation']:.1f}",
         f"{100 * (s['validation_setup'] - s['validation']) / s['wall']:.1f}%"],
        ["per-trial overhead (Optuna duration - `wall_time`)", f"{s['per_trial_overhead']:.1f}",
         f"{100 * s['per_trial_overhead'] / s['wall']:.1f}%"],
        ["between trials (wall - sum of durations)", f"{s['between_trials']:.1f}",
         f"{100 * s['between_trials'] / s['wall']:.1f}%"],
        ["**study wall time**", f"{s['wall']:.1f}", "100%"],
    ]
    lines = [
        "# Overhead",
        "",
        f"Study: `{WORKLOAD}`, objective throughput, `cpu` space, {s['n_trials']} trials, 10 s of training each "
        f"(shortest: {s['min_trial_train']:.1f} s), no confirmation, launcher not pre-warmed.",
        "",
        common.md_table(["where the study's wall time went", "seconds", "share"], rows),
        "",
        f"**Inside training and validation: {100 * s['inside_fraction']:.1f}%** of the study's wall time "
        f"(training alone: {100 * s['train_fraction']:.1f}%). Goal >= 95%: "
        f"{'met' if s['inside_fraction'] >= 0.95 else 'NOT met'}.",
        f"Per-trial overhead: median {s['per_trial_overhead_median']:.2f} s (first trial, which boots the "
        f"forkserver: {s['per_trial_overhead_first']:.2f} s). Leaving out that one-time boot "
        f"({s['forkserver_boot']:.1f} s), i.e. in the steady state of a longer study: "
        f"**{100 * s['inside_fraction_steady']:.1f}%** inside.",
        f"Optuna storage calls made by the study: {s['storage_seconds_per_trial'] * 1000:.0f} ms per trial "
        f"(excluding heartbeats; most overlap training).",
        "",
        "Storage loop (open_storage's SQLite setup; ask + params + 20 user attrs + 4 reports + tell):",
        "",
        common.md_table(["sampler", "ms per trial, median (min-max)"],
                        [[k, common.fmt_stats({kk: (vv * 1000 if isinstance(vv, float) else vv)
                                               for kk, vv in v["per_trial"].items()})]
                         for k, v in data["storage_loop"].items()]),
        "",
    ]
    launch = data["launch"]
    if "skipped" in launch:
        lines.append(f"Trial launch latency: skipped ({launch['skipped']}).")
    else:
        cold = launch["cold"]
        warm = launch["warm"]
        lines += [
            "Trial launch latency (bench/trial_launch.py, seconds, median (min-max)):",
            "",
            common.md_table(["", "to user code"], [
                ["cold: interpreter start -> user code in the trial",
                 common.fmt_stats(cold["process_start_to_user_code"])],
                ["cold: launch() -> user code (forkserver boot)", common.fmt_stats(cold["launch_to_user_code"])],
                ["warm: launch() -> user code", common.fmt_stats(warm["to_user_code"])],
            ]),
        ]
    return "\n".join(lines)


def figure(data: dict[str, Any]) -> Any:
    plt = common.pyplot()
    s = data["study"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [2, 3]})
    parts = [("training", s["train"]), ("validation + setup", s["validation_setup"]),
             ("per-trial overhead", s["per_trial_overhead"]), ("between trials", s["between_trials"])]
    left = 0.0
    for i, (label, value) in enumerate(parts):
        ax1.barh([0], [value], left=left, color=f"C{i}", label=f"{label} ({100 * value / s['wall']:.1f}%)")
        left += value
    ax1.set_yticks([])
    ax1.set_xlabel("seconds of study wall time")
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    ax1.set_title(f"inside training+validation: {100 * s['inside_fraction']:.1f}%")
    numbers = [t["number"] for t in s["trials"]]
    bottom = [0.0] * len(numbers)
    for i, key in enumerate(("train", "validation_setup", "per_trial_overhead")):
        values = [t[key] for t in s["trials"]]
        ax2.bar(numbers, values, bottom=bottom, color=f"C{i}")
        bottom = [b + v for b, v in zip(bottom, values)]
    ax2.set_xlabel("trial")
    ax2.set_ylabel("seconds")
    ax2.set_title("per trial")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__)
    args = p.parse_args(argv)
    common.scratch_home()
    out = common.results_dir(args.out)
    launch = launch_latency(args.quick)
    study = study_overhead(args.quick, args.seed)
    loop = storage_loop(30 if args.quick else 100)
    data = {"quick": args.quick, "study": study, "storage_loop": loop, "launch": launch,
            "load": common.load_average()}
    data["headline"] = {
        "inside_fraction": study["inside_fraction"], "train_fraction": study["train_fraction"],
        "goal_met": study["inside_fraction"] >= 0.95, "min_trial_train": study["min_trial_train"],
        "inside_fraction_steady": study["inside_fraction_steady"], "forkserver_boot": study["forkserver_boot"],
        "n_trials": study["n_trials"],
        "per_trial_overhead_median": study["per_trial_overhead_median"],
        "storage_ms_per_trial_loop_random": loop["random"]["per_trial"]["median"] * 1000,
        "storage_ms_per_trial_loop_tpe": loop["tpe"]["per_trial"]["median"] * 1000,
        "storage_ms_per_trial_in_study": study["storage_seconds_per_trial"] * 1000,
        "launch_cold_median": None if "skipped" in launch else launch["cold"]["launch_to_user_code"]["median"],
        "launch_warm_median": None if "skipped" in launch else launch["warm"]["to_user_code"]["median"],
    }
    common.write_outputs(out, "overhead", data, markdown(data), figure(data))
    return data


if __name__ == "__main__":
    main()
