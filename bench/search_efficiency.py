"""Search efficiency: how much tuning time autotune (TPE + its pruning) needs to reach 95% of the
best configuration of an exhaustive grid, against Optuna's RandomSampler and the grid itself.

Reproduce (full: 64-configuration grid, ~2-3 min on a 2-core CPU; --quick: 8
configurations, ~20 s):

    .venv/bin/python bench/search_efficiency.py [--quick] [--seeds 20] [--out DIR]
    .venv/bin/python bench/search_efficiency.py --table DIR/search_efficiency_table.json   # replay only

Method (a tabular benchmark, as HPOBench / NAS-Bench-201 do):
1. Measure. Every grid configuration of the `digits` workload (budget 3 epochs; --quick 2) trains
   ONCE for real, each in its own process through autotune's launcher and engine (the same path
   a study trial takes). The
   baseline recipe runs first and to the end of the budget: its final accuracy - 0.005 is the
   target, as in a study. Every other configuration is recorded until its first validation at or
   above the target (nothing after it is ever used: the objective stops there), or to the end of
   the budget. Each validation point keeps its training time (engine `train_time`) and the
   parent's wall clock since the launch call; the run's full wall time (process start to exit) is
   kept too. The table is written as `search_efficiency_table.json`.
2. Replay. Each search strategy runs as a real Optuna study (in memory) whose objective looks the
   configuration up in the table instead of training. A trial costs the recorded wall time up to
   where it stops (the validation where it reaches the target or is pruned, plus the measured
   process teardown), plus the sampler's and pruner's own measured compute time. Pruning replays
   autotune's rules exactly: the trial reports 1 - accuracy at each validation index, the pruner is
   autotune.study.make_pruner("median", 4, epochs) (MedianPruner(n_startup_trials=3,
   n_warmup_steps=4)), and a trial is also stopped once its training time exceeds the best
   time-to-target so far (autotune.study.objective.TrialObjective). As in a study, the baseline is trial 0, runs
   to the end and is never pruned; the reached-target point is not reported (the engine stops
   before `on_eval`).
3. Score. The objective is time-to-accuracy (training seconds to the target). "95% of the grid's
   best" means a completed trial whose speed (1 / time-to-target) is at least 95% of the fastest
   grid configuration's. For each strategy and seed: the tuning time and trial count until the
   first such trial.

Strategies: autotune (TPESampler(seed) as in StudyRunner.open + pruning), random (Optuna's
RandomSampler, no pruner: the objective still stops a run at the target), grid (every
configuration once in a seeded random order), and three ablations: random + autotune's pruning,
TPE without pruning, TPE with only the slower-than-best rule. Every configuration runs with
threads=1 (see FIXED).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any

import common

WORKLOAD = "digits"
EVALS_PER_EPOCH = 4  # the time-to-accuracy objective's (autotune/objectives/time_to_accuracy.py)
FULL_GRID = {
    "batch_size": [32, 64, 128, 256],
    "optimizer": ["sgd", "adam"],
    "learning_rate": [1e-3, 3e-3, 1e-2, 3e-2],
    "precision": ["fp32", "bf16"],
}
QUICK_GRID = {
    "batch_size": [64, 256],
    "optimizer": ["sgd", "adam"],
    "learning_rate": [1e-3, 1e-2],
    "precision": ["fp32"],
}
# Settings every grid configuration shares besides the baseline recipe's. threads=1: on a shared
# 2-core machine two OpenMP threads make a run's time vary 10x with other users' load (each
# barrier waits for a descheduled thread), which would turn a table measured once into a record
# of the load instead of the configurations.
FIXED = {"threads": 1}
EPOCHS = {"full": 3, "quick": 2}
QUALITY = 0.95
STRATEGIES = {
    # name: (sampler, pruning: "autotune" = median pruner + slower-than-best, "time" = only
    # slower-than-best, None = none)
    "autotune": ("tpe", "autotune"),
    "random": ("random", None),
    "grid": ("grid", None),
    "random+pruning": ("random", "autotune"),
    "tpe, no pruning": ("tpe", None),
    "tpe, time rule only": ("tpe", "time"),
}
HEADLINE = ("autotune", "random", "grid")


def key_of(config: dict[str, Any]) -> str:
    return json.dumps({k: config[k] for k in sorted(config)}, sort_keys=True)


# 1. measure --------------------------------------------------------------------------------------


def measure(grid: dict[str, list[Any]], epochs: int, seed: int) -> dict[str, Any]:
    """Train every grid configuration once; return the table."""
    baseline = common.resolved(WORKLOAD, FIXED)
    base_cfg = {k: baseline[k] for k in grid}
    configs = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if base_cfg not in configs:
        raise SystemExit(f"the grid must contain the baseline recipe {base_cfg}")
    others = [c for c in configs if c != base_cfg]
    random.Random(seed).shuffle(others)  # spread any drift in machine load over the grid
    budget = {"epochs": epochs}
    rows: dict[str, Any] = {}
    load_before = common.load_average()
    started = time.perf_counter()

    def record(config: dict[str, Any], result: dict[str, Any], target: float | None) -> dict[str, Any]:
        curve = result.get("curve") or []
        walls = result["eval_walls"]
        points = []
        for i, point in enumerate(curve):
            # Every validation reaches on_eval (no target is passed to the engine); should one be
            # missing, the run's end is the honest upper bound for its wall clock.
            wall = walls[i] if i < len(walls) else result["launch_wall"]
            points.append({"index": point["index"], "train_time": point["train_time"],
                           "val_accuracy": point["val_accuracy"], "wall": wall})
        tail = result["launch_wall"] - walls[-1] if walls and len(walls) == len(curve) else 0.0
        hit = next((p for p in points if target is not None and p["val_accuracy"] >= target), None)
        return {
            "config": config, "status": result["status"], "error": result.get("error"),
            "points": points, "wall_total": result["launch_wall"], "teardown": tail,
            "time_to_target": hit["train_time"] if hit else None,
            "throughput": result.get("throughput"), "train_time": result.get("train_time"),
        }

    common.warm_up(WORKLOAD)
    common.log(f"grid: {len(configs)} configurations of {WORKLOAD}, {epochs} epochs each at most; baseline first")
    base = common.run_config(WORKLOAD, {**FIXED, **base_cfg}, budget, seed=0, evals_per_epoch=EVALS_PER_EPOCH)
    if base["status"] != "ok":
        raise SystemExit(f"baseline run failed: {base['status']}: {base.get('error')}")
    target = round(max(0.0, base["val_accuracy"] - 0.005), 4)  # as StudyRunner._record sets it
    rows[key_of(base_cfg)] = record(base_cfg, base, target)
    common.log(f"  baseline: final accuracy {base['val_accuracy']:.4f} -> target {target}; "
               f"time-to-target {rows[key_of(base_cfg)]['time_to_target']:.2f} s, wall {base['launch_wall']:.1f} s")
    for n, config in enumerate(others, 1):
        result = common.run_config(
            WORKLOAD, {**FIXED, **config}, budget, seed=0, evals_per_epoch=EVALS_PER_EPOCH,
            stop_when=lambda point: point["val_accuracy"] >= target,
        )
        row = record(config, result, target)
        rows[key_of(config)] = row
        tta = row["time_to_target"]
        common.log(f"  {n + 1:>2}/{len(configs)} {common.short_settings(config):<62} "
                   f"tta={'%.2fs' % tta if tta is not None else 'missed':<8} wall={row['wall_total']:.1f}s")
    return {
        "workload": WORKLOAD, "grid": grid, "fixed": FIXED, "budget": budget, "evals_per_epoch": EVALS_PER_EPOCH,
        "baseline": base_cfg, "target": target, "rows": rows,
        "measure_wall": time.perf_counter() - started,
        "load_before": load_before, "load_after": common.load_average(),
    }


# 2. replay ---------------------------------------------------------------------------------------


class Replay:
    """One strategy, one seed: Optuna proposes, the table answers, the clock adds recorded costs."""

    def __init__(self, table: dict[str, Any], strategy: str, seed: int, horizon: float, max_trials: int) -> None:
        import optuna

        from autotune.study.prepare import make_pruner

        self.table = table
        self.grid = table["grid"]
        self.target = table["target"]
        self.sampler_name, self.pruning = STRATEGIES[strategy]
        self.seed = seed
        self.horizon = horizon
        self.max_trials = max_trials
        epochs = table["budget"]["epochs"]
        if self.sampler_name == "tpe":
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed)  # as StudyRunner.open
        else:
            sampler = optuna.samplers.RandomSampler(seed=seed)
        pruner = (make_pruner("median", table["evals_per_epoch"], epochs) if self.pruning == "autotune"
                  else optuna.pruners.NopPruner())
        self.study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
        self.order: list[dict[str, Any]] = []
        if self.sampler_name == "grid":
            rest = [r["config"] for r in table["rows"].values() if r["config"] != table["baseline"]]
            random.Random(seed).shuffle(rest)
            self.order = [table["baseline"], *rest]

    def suggest(self, trial: Any, number: int) -> dict[str, Any]:
        if self.sampler_name == "grid":
            return self.order[number]
        config = {}
        for name, values in self.grid.items():
            if name in ("batch_size", "learning_rate"):
                # ordinal, as the real space's log-scale int / float ranges are
                config[name] = values[trial.suggest_int(f"{name}_index", 0, len(values) - 1)]
            else:
                config[name] = trial.suggest_categorical(name, list(values))
        return config

    def run(self) -> dict[str, Any]:
        import optuna
        from optuna.trial import TrialState

        rows = self.table["rows"]
        clock = 0.0
        best: float | None = None
        history = []
        base = self.table["baseline"]
        if self.sampler_name != "grid":
            enqueue = {}
            for name, values in self.grid.items():
                if name in ("batch_size", "learning_rate"):
                    enqueue[f"{name}_index"] = values.index(base[name])
                else:
                    enqueue[name] = base[name]
            self.study.enqueue_trial(enqueue)
        limit = len(self.order) if self.sampler_name == "grid" else self.max_trials
        for number in range(limit):
            if clock >= self.horizon:
                break
            overhead = time.perf_counter()
            trial = self.study.ask()
            config = self.suggest(trial, number)
            overhead = time.perf_counter() - overhead
            row = rows[key_of(config)]
            is_baseline = number == 0
            value, cost, stopped, why = None, row["wall_total"], None, "missed"
            for i, point in enumerate(row["points"]):
                if not is_baseline and point["val_accuracy"] >= self.target:
                    value, cost, why = point["train_time"], row["wall_total"], "complete"
                    break
                t0 = time.perf_counter()
                trial.report(1.0 - point["val_accuracy"], point["index"])
                prune = False
                if not is_baseline and self.pruning:
                    if self.pruning == "autotune" and trial.should_prune():
                        prune, why = True, "median"
                    elif best is not None and point["train_time"] > best:
                        prune, why = True, "slower"
                overhead += time.perf_counter() - t0
                if prune:
                    stopped = i
                    cost = point["wall"] + row["teardown"]
                    break
            if is_baseline:
                value, why = row["time_to_target"], "complete"
            t0 = time.perf_counter()
            if value is not None and stopped is None:
                self.study.tell(trial, value)
            else:
                self.study.tell(trial, state=TrialState.PRUNED)
            overhead += time.perf_counter() - t0
            clock += cost + overhead
            if value is not None and stopped is None:
                best = value if best is None else min(best, value)
            history.append({"trial": number, "config": config, "outcome": why, "value": value,
                            "cost": cost, "sampler_seconds": overhead, "clock": clock, "best": best})
        del optuna
        return {"history": history, "clock": clock, "trials": len(history)}


def score(history: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    for h in history:
        if h["outcome"] == "complete" and h["value"] is not None and h["value"] <= threshold:
            return {"reached": True, "time": h["clock"], "trials": h["trial"] + 1}
    return {"reached": False, "time": math.inf, "trials": math.inf,
            "censored_at": history[-1]["clock"] if history else 0.0}


def replay_all(table: dict[str, Any], seeds: list[int], max_trials: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    rows = table["rows"].values()
    values = [r["time_to_target"] for r in rows if r["time_to_target"] is not None]
    grid_best = min(values)
    threshold = grid_best / QUALITY
    grid_cost = sum(r["wall_total"] for r in rows)
    horizon = 2 * grid_cost
    within = [r["config"] for r in rows if r["time_to_target"] is not None and r["time_to_target"] <= threshold]
    out: dict[str, Any] = {"grid_best": grid_best, "threshold": threshold, "grid_cost": grid_cost,
                           "horizon": horizon, "configs_within_95": within, "strategies": {}}
    for strategy in STRATEGIES:
        runs = []
        started = time.perf_counter()
        for seed in seeds:
            replay = Replay(table, strategy, seed, horizon, max_trials).run()
            replay["score"] = score(replay["history"], threshold)
            replay["seed"] = seed
            runs.append(replay)
        times = [r["score"]["time"] for r in runs]
        trials = [r["score"]["trials"] for r in runs]
        within_keys = {key_of(c) for c in within}
        summary = {
            "time": _robust_stats(times), "trials": _robust_stats(trials),
            # seeds in which the median pruner stopped a configuration that is within 95% of the
            # grid's best (before any trial reached 95%)
            "median_pruned_a_95_config": sum(
                any(h["outcome"] == "median" and key_of(h["config"]) in within_keys
                    and h["clock"] <= r["score"]["time"] for h in r["history"]) for r in runs),
            "reached": sum(r["score"]["reached"] for r in runs), "seeds": len(runs),
            "pruned_fraction": statistics.mean(
                sum(h["outcome"] in ("median", "slower") for h in r["history"]) / max(1, len(r["history"]))
                for r in runs),
            "sampler_seconds_per_trial": statistics.mean(
                sum(h["sampler_seconds"] for h in r["history"]) / max(1, len(r["history"])) for r in runs),
        }
        out["strategies"][strategy] = {"summary": summary, "runs": runs}
        common.log(f"  replay {strategy:<16} median time to 95%: {common.fmt(summary['time']['median'])} s, "
                   f"trials {common.fmt(summary['trials']['median'])}, reached in {summary['reached']}/{len(runs)} seeds "
                   f"({time.perf_counter() - started:.1f}s)")
    a = out["strategies"]["autotune"]["summary"]["time"]["median"]
    r = out["strategies"]["random"]["summary"]["time"]["median"]
    # None when undefined: random never got there in the median seed (autotune then wins only
    # if it did), or autotune never did
    out["autotune_over_random"] = a / r if math.isfinite(a) and math.isfinite(r) and r > 0 else None
    out["autotune_median_reached"] = math.isfinite(a)
    out["random_median_reached"] = math.isfinite(r)
    return out


def _robust_stats(values: list[float]) -> dict[str, Any]:
    """median/min/max where a seed that never got there counts as infinitely slow."""
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1],
            "n": len(ordered), "never": sum(math.isinf(v) for v in ordered)}


# 3. report ---------------------------------------------------------------------------------------


def figure(table: dict[str, Any], replays: dict[str, Any]) -> Any:
    plt = common.pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    baseline_tta = table["rows"][key_of(table["baseline"])]["time_to_target"]
    horizon = replays["horizon"]
    grid_t = [horizon * i / 400 for i in range(401)]
    colors = {"autotune": "C0", "random": "C1", "grid": "C2", "random+pruning": "C4", "tpe, no pruning": "C5",
              "tpe, time rule only": "C6"}
    for strategy, data in replays["strategies"].items():
        curves = []
        for run in data["runs"]:
            curve, j, best = [], 0, None
            hist = run["history"]
            for t in grid_t:
                while j < len(hist) and hist[j]["clock"] <= t:
                    best = hist[j]["best"]
                    j += 1
                curve.append(baseline_tta / best if best else float("nan"))
            curves.append(curve)
        med = [statistics.median([c[i] for c in curves if not math.isnan(c[i])] or [float("nan")]) for i in range(len(grid_t))]
        lo = [min([c[i] for c in curves if not math.isnan(c[i])] or [float("nan")]) for i in range(len(grid_t))]
        hi = [max([c[i] for c in curves if not math.isnan(c[i])] or [float("nan")]) for i in range(len(grid_t))]
        style = "-" if strategy in HEADLINE else ":"
        ax.plot(grid_t, med, style, color=colors[strategy], label=f"{strategy} (median)")
        if strategy in HEADLINE:
            ax.fill_between(grid_t, lo, hi, color=colors[strategy], alpha=0.12)
    ax.axhline(QUALITY * baseline_tta / replays["grid_best"], color="k", lw=0.8, ls="--", label="95% of grid best")
    ax.axhline(baseline_tta / replays["grid_best"], color="k", lw=0.8, label="grid best")
    ax.axvline(replays["grid_cost"], color="grey", lw=0.8, ls="-.", label="cost of the full grid")
    ax.set_xlabel("tuning time (s, replayed from measured wall times)")
    ax.set_ylabel("best-so-far speedup in time-to-accuracy vs baseline")
    ax.set_title(f"{table['workload']}: {len(table['rows'])}-config grid, "
                 f"{len(next(iter(replays['strategies'].values()))['runs'])} seeds (band: min-max)")
    ax.legend(fontsize=8, loc="lower right")
    names = list(replays["strategies"])
    data = [[v for v in (r["score"]["time"] for r in replays["strategies"][n]["runs"])] for n in names]
    cap = replays["horizon"]
    ax2.boxplot([[min(v, cap) for v in d] for d in data], orientation="horizontal", tick_labels=names)
    ax2.set_xlabel(f"tuning time to 95% of grid best (s; never = {cap:.0f})")
    ax2.axvline(replays["grid_cost"], color="grey", lw=0.8, ls="-.")
    fig.tight_layout()
    return fig


def markdown(table: dict[str, Any], replays: dict[str, Any]) -> str:
    rows = table["rows"]
    base = rows[key_of(table["baseline"])]
    lines = [
        "# Search efficiency (tabular replay)",
        "",
        f"Workload `{table['workload']}`, budget {table['budget']['epochs']} epochs, validation "
        f"{table['evals_per_epoch']}x per epoch, target accuracy {table['target']} (baseline final - 0.005), "
        f"fixed for every configuration: {common.short_settings(table.get('fixed', {}))}. "
        f"Grid: " + ", ".join(f"{k} {v}" for k, v in table["grid"].items()) + f" = {len(rows)} configurations, "
        f"measured once in {table['measure_wall']:.0f} s (load {table['load_before']['1min']} -> "
        f"{table['load_after']['1min']}).",
        "",
        f"Grid best time-to-target: {replays['grid_best']:.2f} s (baseline {base['time_to_target']:.2f} s); "
        f"95% threshold: <= {replays['threshold']:.2f} s; {len(replays['configs_within_95'])} configuration(s) "
        f"within it. Running the whole grid costs {replays['grid_cost']:.0f} s. Replay horizon "
        f"{replays['horizon']:.0f} s.",
        "",
        common.md_table(
            ["strategy", "tuning time to 95% (s), median (min-max)", "trials to 95%", "reached", "pruned trials",
             "seeds where the median pruner cut a 95% config", "sampler s/trial"],
            [[name,
              common.fmt_stats(d["summary"]["time"], 3),
              common.fmt_stats(d["summary"]["trials"], 3),
              f"{d['summary']['reached']}/{d['summary']['seeds']}",
              f"{100 * d['summary']['pruned_fraction']:.0f}%",
              f"{d['summary']['median_pruned_a_95_config']}/{d['summary']['seeds']}",
              f"{d['summary']['sampler_seconds_per_trial'] * 1000:.0f} ms"]
             for name, d in replays["strategies"].items()],
        ),
        "",
    ]
    ratio = replays["autotune_over_random"]
    if ratio is not None:
        verdict = "meets" if ratio <= 0.5 else "does NOT meet"
        lines.append(f"autotune / random median tuning time to 95%: **{ratio:.2f}** ({verdict} the <= 0.5 goal).")
    elif not replays["autotune_median_reached"]:
        lines.append("autotune did not reach 95% of the grid's best in the median seed within the horizon: "
                     "the <= 0.5 goal is NOT met.")
    else:
        lines.append("random search did not reach 95% in the median seed within the horizon while autotune did: "
                     "the goal is met (ratio < 0.5, not finite).")
    lines += ["", "## The grid (measured once)", "",
              common.md_table(["configuration", "time-to-target (s)", "run wall (s)", "samples/s"],
                              [[common.short_settings(r["config"]),
                                common.fmt(r["time_to_target"]) if r["time_to_target"] is not None else "missed",
                                f"{r['wall_total']:.1f}", common.fmt(r["throughput"])]
                               for r in sorted(rows.values(), key=lambda r: r["time_to_target"] or math.inf)])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = common.parser(__doc__)
    p.add_argument("--seeds", type=int, default=None, help="replay seeds (default 20; 5 with --quick)")
    p.add_argument("--table", type=Path, default=None, help="replay an existing table instead of measuring")
    p.add_argument("--max-trials", type=int, default=300, help="trial cap per replay (default 300)")
    args = p.parse_args(argv)
    common.scratch_home()
    out = common.results_dir(args.out)
    n_seeds = args.seeds or (5 if args.quick else 20)
    if args.table:
        table = json.loads(args.table.read_text())
        common.log(f"replaying {args.table} ({len(table['rows'])} configurations)")
    else:
        table = measure(QUICK_GRID if args.quick else FULL_GRID, EPOCHS["quick" if args.quick else "full"], args.seed)
        (out / "search_efficiency_table.json").write_text(json.dumps(table, indent=1) + "\n")
    seeds = list(range(args.seed, args.seed + n_seeds))
    common.log(f"replaying {len(STRATEGIES)} strategies x {n_seeds} seeds")
    replays = replay_all(table, seeds, args.max_trials)
    ratio = replays["autotune_over_random"]
    headline = {
        "grid_configs": len(table["rows"]),
        "grid_best_time_to_target": replays["grid_best"],
        "grid_cost_seconds": replays["grid_cost"],
        "seeds": n_seeds,
        **{f"{s}_time_to_95": replays["strategies"][s]["summary"]["time"] for s in STRATEGIES},
        **{f"{s}_trials_to_95": replays["strategies"][s]["summary"]["trials"] for s in STRATEGIES},
        "autotune_over_random": ratio,
        "goal_met": (ratio is not None and ratio <= 0.5)
        or (ratio is None and replays["autotune_median_reached"]),
    }
    slim = {name: {"summary": d["summary"],
                   "runs": [{"seed": r["seed"], "score": r["score"], "trials": r["trials"],
                             "history": r["history"]} for r in d["runs"]]}
            for name, d in replays["strategies"].items()}
    data = {"quick": args.quick, "headline": headline, "table_file": "search_efficiency_table.json",
            "target": table["target"], "grid": table["grid"], "budget": table["budget"],
            "replay": {**{k: v for k, v in replays.items() if k != "strategies"}, "strategies": slim},
            "load": common.load_average()}
    common.write_outputs(out, "search_efficiency", data, markdown(table, replays), figure(table, replays))
    return data


if __name__ == "__main__":
    main()
