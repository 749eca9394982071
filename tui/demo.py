"""Made-up studies shaped exactly like the runner's, for tests, screenshots and the benchmark.

`build_demo_home(home)` fills an AUTOTUNE_HOME with two studies: "demo" (time-to-accuracy, running,
with a live trial and events) and "pareto-demo" (pareto, finished). `bulk_add_trials` writes many
trials straight into an Optuna SQLite file (Optuna's add_trials costs ~12 ms a trial).
No torch: numbers are drawn from a seeded random generator.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import FrozenTrial, TrialState

from autotune.objectives import get_objective
from autotune.storage.rdb import sqlite_path
from autotune.storage.local import Store

DISTRIBUTIONS: dict[str, BaseDistribution] = {
    "batch_size": CategoricalDistribution([32, 64, 128, 256, 512]),
    "optimizer": CategoricalDistribution(["sgd", "adamw"]),
    "learning_rate": FloatDistribution(1e-4, 0.3, log=True),
    "precision": CategoricalDistribution(["fp32", "bf16"]),
    "workers": IntDistribution(0, 4),
    "pruning": FloatDistribution(0.0, 0.5),
}
HARDWARE = {
    "device_type": "cpu", "device_name": "Intel Xeon (2 cores)", "cpu_count": 2,
    "memory_bytes": 8 * 2**30, "torch_version": "2.14.1", "precisions": ["fp32", "bf16"],
    "gpu_memory_bytes": None,
}
BASELINE = {"batch_size": 64, "optimizer": "sgd", "learning_rate": 0.1, "precision": "fp32",
            "workers": 0, "pruning": 0.0}
FAIL_REASONS = {
    "oom": "out of memory at batch_size 512 (peak 7.9 GiB of 8 GiB)",
    "diverged": "loss became NaN at step 212 (learning_rate 0.29 too high?)",
}


def _settings(rng: random.Random, baseline: bool) -> dict[str, Any]:
    if baseline:
        return dict(BASELINE)
    return {
        "batch_size": rng.choice([32, 64, 128, 256, 512]),
        "optimizer": rng.choice(["sgd", "adamw"]),
        "learning_rate": round(10 ** rng.uniform(-4, math.log10(0.3)), 5),
        "precision": rng.choice(["fp32", "bf16"]),
        "workers": rng.randint(0, 4),
        "pruning": round(rng.uniform(0.0, 0.5), 2),
    }


def _metrics(rng: random.Random, s: dict[str, Any], target: float) -> dict[str, Any]:
    speed = (s["batch_size"] / 64) ** 0.5 * (1.35 if s["precision"] == "bf16" else 1.0)
    speed *= 1 + 0.08 * s["workers"]
    throughput = 2400 * speed * rng.uniform(0.9, 1.1)
    lr_fit = math.exp(-((math.log10(s["learning_rate"]) + 2) ** 2) / 2)
    accuracy = min(0.995, 0.9 + 0.08 * lr_fit - 0.05 * s["pruning"] + rng.uniform(-0.01, 0.01))
    train_time = 1797 * 5 / throughput
    reach = train_time * rng.uniform(0.35, 0.9) if accuracy >= target else None
    if reach is None and s == BASELINE:
        reach = train_time  # the runner sets the target from the baseline, which reaches it
    return {
        "throughput": round(throughput, 1),
        "step_time_p50": s["batch_size"] / throughput,
        "step_time_p95": 1.3 * s["batch_size"] / throughput,
        "data_wait_fraction": round(rng.uniform(0.0, 0.2) / (1 + s["workers"]), 4),
        "peak_memory_bytes": int(150e6 * (s["batch_size"] / 64) ** 0.7 * (0.7 if s["precision"] == "bf16" else 1)),
        "val_loss": round(1.2 - accuracy, 4),
        "val_accuracy": round(accuracy, 4),
        "nonzero_fraction": round(1 - s["pruning"], 3),
        "wall_time": round(train_time + 1.5, 3),
        "train_time": round(train_time, 3),
        "time_to_target": round(reach, 3) if reach else None,
        "steps": int(1797 * 5 / s["batch_size"]),
        "epochs": 5,
    }


def make_trials(
    n: int, objective: str = "time-to-accuracy", seed: int = 0, target: float = 0.94,
    running: int = 0, start: datetime | None = None,
) -> list[FrozenTrial]:
    """n finished trials (mostly COMPLETE, some PRUNED and FAIL) then `running` RUNNING ones."""
    rng = random.Random(seed)
    t = start or datetime.now() - timedelta(seconds=9 * (n + running) + 5)
    trials = []
    for number in range(n + running):
        baseline = number == 0
        s = _settings(rng, baseline)
        m = _metrics(rng, s, target)
        # what the objective makes of these measurements (None: it earned no value)
        earned = get_objective(objective).values({**m, "metric_value": m["val_accuracy"]})
        attrs: dict[str, Any] = {"settings": s, "baseline": baseline, "runner": "demo"}
        roll = rng.random()
        is_running = number >= n
        duration = m["wall_time"] * (0.5 if roll < 0.3 else 1.0)
        evals = 5
        curve = {i: round(1 - m["val_accuracy"] * (1 - 0.6 ** (i + 1)), 4) for i in range(evals)}
        state, values = TrialState.COMPLETE, None
        if is_running:
            state, status, curve = TrialState.RUNNING, None, dict(list(curve.items())[:2])
            m = {}
        elif not baseline and roll < 0.06:
            kind = "oom" if s["batch_size"] >= 256 else "diverged"
            state, status, curve = TrialState.FAIL, kind, {}
            attrs["reason"] = FAIL_REASONS[kind]
            m = {}
        elif not baseline and (roll < 0.3 or earned is None):
            state, status = TrialState.PRUNED, "pruned"
            curve = dict(list(curve.items())[:2])
            attrs["reason"] = f"error rate {curve[1]:.3f} at eval 1 worse than the median of earlier trials"
        else:
            status = "ok"
            values = list(earned) if isinstance(earned, tuple) else [earned]
        if status is not None:
            attrs["autotune_status"] = status
            attrs["log_tail"] = (
                f"epoch 1/5 loss 0.912 acc 0.811\nepoch 2/5 loss 0.402 acc 0.902\n"
                f"done: {status} {attrs.get('reason', '')}".strip()
            )
        attrs.update({k: v for k, v in m.items() if v is not None})
        params = {k: v for k, v in s.items() if k in DISTRIBUTIONS}
        trials.append(FrozenTrial(
            number=number, state=state, value=None, values=values,
            datetime_start=t, datetime_complete=None if is_running else t + timedelta(seconds=duration),
            params=params, distributions={k: DISTRIBUTIONS[k] for k in params},
            user_attrs=attrs, system_attrs={}, intermediate_values=curve, trial_id=number,
        ))
        t += timedelta(seconds=duration + 0.5)
    return trials


DIRECTIONS = {
    "time-to-accuracy": ["minimize"], "throughput": ["maximize"], "accuracy": ["maximize"],
    "pareto": ["maximize", "maximize", "minimize"],
}


def create_demo_study(
    storage_url: str, name: str, objective: str = "time-to-accuracy", n_trials: int = 20,
    target: float | None = 0.94, device: str = "cpu", hardware: dict[str, Any] | None = None,
) -> optuna.Study:
    """An empty Optuna study with the runner's study user attrs."""
    study = optuna.create_study(study_name=name, storage=storage_url, directions=DIRECTIONS[objective])
    study.set_user_attr("autotune", {
        "workload": "digits", "space": "quick", "objective": objective, "target": target,
        "budget": {"epochs": 5}, "budget_text": "5 epochs", "n_trials": n_trials, "seed": 0,
        "device": device, "directions": DIRECTIONS[objective],
    })
    study.set_user_attr("hardware", hardware or HARDWARE)
    study.set_user_attr("target", target)
    study.set_user_attr("baseline_number", 0)
    return study


def build_demo_home(home: Path, n_demo: int = 14, n_pareto: int = 24) -> Store:
    """Two studies in `home` (an AUTOTUNE_HOME): 'demo' running, 'pareto-demo' finished."""
    home.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{home / 'studies.db'}"
    store = Store(home / "autotune.db")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    demo = create_demo_study(url, "demo", n_trials=40)
    demo.add_trials(make_trials(n_demo, running=1, seed=1))
    store.put_study("demo", storage=url, workload="digits", space="quick",
                    objective="time-to-accuracy", n_trials=40, spec={"name": "demo"})
    store.set_study_status("demo", "running", pid=None)
    live = n_demo
    store.trial_started("demo", live, None, demo.trials[live].user_attrs["settings"])
    store.trial_progress("demo", live, step=84, total_steps=140, fraction=0.6, samples_per_s=3120.5,
                         train_time=2.4, peak_memory_bytes=212_000_000)
    store.add_event("demo", "study_started", "study demo started: digits, time-to-accuracy, 40 trials")
    for t in demo.trials[:n_demo]:
        kind = {"COMPLETE": "trial_complete", "PRUNED": "trial_pruned", "FAIL": "trial_failed"}[t.state.name]
        detail = t.user_attrs.get("reason") or f"{t.values[0]:.3g} s to target"
        store.add_event("demo", kind, f"trial {t.number} {t.state.name.lower()}: {detail}", t.number)
    store.add_event("demo", "trial_started", f"trial {live} started", live)

    pareto = create_demo_study(url, "pareto-demo", objective="pareto", n_trials=n_pareto, target=None)
    pareto.add_trials(make_trials(n_pareto, objective="pareto", seed=2))
    store.put_study("pareto-demo", storage=url, workload="digits", space="quick",
                    objective="pareto", n_trials=n_pareto, spec={"name": "pareto-demo"})
    store.set_study_status("pareto-demo", "running", pid=None)
    store.set_study_status("pareto-demo", "finished")
    store.add_event("pareto-demo", "study_finished", "study pareto-demo finished")
    return store


def bulk_add_trials(storage_url: str, name: str, trials: list[FrozenTrial]) -> None:
    """Append finished or running trials to study `name` in an Optuna SQLite file, in one transaction.

    Writes Optuna's RDB schema (version 12) directly: add_trials goes through SQLAlchemy at about
    12 ms a trial, too slow for a 10,000-trial benchmark. The tests check Optuna reads these back.
    """
    path = sqlite_path(storage_url)
    if path is None:
        raise ValueError(f"bulk_add_trials needs a sqlite:/// URL, got {storage_url}")
    conn = sqlite3.connect(path)
    try:
        with conn:
            study_id = conn.execute("select study_id from studies where study_name = ?", [name]).fetchone()[0]
            base = conn.execute("select count(*) from trials where study_id = ?", [study_id]).fetchone()[0]
            next_id = (conn.execute("select max(trial_id) from trials").fetchone()[0] or 0) + 1
            trial_rows, params, values, attrs, inter = [], [], [], [], []
            djson: dict[int, str] = {}
            for i, t in enumerate(trials):
                tid = next_id + i
                trial_rows.append((tid, base + i, study_id, t.state.name, _dt(t.datetime_start),
                                   _dt(t.datetime_complete)))
                for pname, value in t.params.items():
                    dist = t.distributions[pname]
                    text = djson.setdefault(id(dist), distribution_to_json(dist))
                    params.append((tid, pname, dist.to_internal_repr(value), text))
                for objective, value in enumerate(t.values or ()):
                    values.append((tid, objective, *_stored(value)))
                for key, value in t.user_attrs.items():
                    attrs.append((tid, key, json.dumps(value)))
                for step, value in t.intermediate_values.items():
                    inter.append((tid, step, *_stored(value)))
            conn.executemany("insert into trials (trial_id, number, study_id, state, datetime_start, "
                             "datetime_complete) values (?, ?, ?, ?, ?, ?)", trial_rows)
            conn.executemany("insert into trial_params (trial_id, param_name, param_value, "
                             "distribution_json) values (?, ?, ?, ?)", params)
            conn.executemany("insert into trial_values (trial_id, objective, value, value_type) "
                             "values (?, ?, ?, ?)", values)
            conn.executemany("insert into trial_user_attributes (trial_id, key, value_json) "
                             "values (?, ?, ?)", attrs)
            conn.executemany("insert into trial_intermediate_values (trial_id, step, intermediate_value, "
                             "intermediate_value_type) values (?, ?, ?, ?)", inter)
    finally:
        conn.close()


def _dt(value: datetime | None) -> str | None:
    # SQLAlchemy's SQLite DATETIME format, microseconds always present.
    return value.strftime("%Y-%m-%d %H:%M:%S.%f") if value is not None else None


def _stored(value: float) -> tuple[float | None, str]:
    if math.isnan(value):
        return None, "NAN"
    if math.isinf(value):
        return None, "INF_POS" if value > 0 else "INF_NEG"
    return value, "FINITE"
