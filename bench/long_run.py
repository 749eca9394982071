"""Does the main job's answer hold where you train? `scripts/demo.sh` with each seed, in a fresh
AUTOTUNE_HOME; then its answer (the settings the study confirmed) trained at 10x the study's
budget beside the baseline trained as long, paired and interleaved: the time each takes to reach
the baseline's best val_loss at that length (the baseline's best over its whole run).

The bar (issue 26): confirmed >= 3x within 5 minutes after set-up, no step of the "why it is
faster" path below 0.9x, the two speedups apart in the report, and at 10x the budget the answer
reaching the baseline's best val_loss at least 3x sooner.

    python bench/long_run.py                 # seeds 0-4, 2 pairs each
    python bench/long_run.py --seed 1 --runs 2
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

BUDGET_STEPS, SCALE, PAIRS, EVAL_EVERY = 150, 10, 2, 25
BAR_SPEEDUP, BAR_SECONDS, BAR_STEP, BAR_LONG = 3.0, 300.0, 0.9, 3.0


def run_demo(seed: int) -> dict[str, Any]:
    """One main job, as a user runs it, in its own AUTOTUNE_HOME: its report and wall time."""
    env = {**os.environ, "AUTOTUNE_HOME": tempfile.mkdtemp(prefix="autotune-long-")}
    before, started = os.getloadavg()[0], time.perf_counter()
    proc = subprocess.run(["bash", str(common.REPO / "scripts" / "demo.sh"), f"demo-{seed}", "--seed", str(seed),
                           "--json"], capture_output=True, text=True, env=env, cwd=common.REPO)
    row: dict[str, Any] = {"seed": seed, "exit": proc.returncode, "wall_s": time.perf_counter() - started,
                           "load_before": before, "load_after": os.getloadavg()[0]}
    try:
        row["report"] = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        row["error"] = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return row


def time_to(result: dict[str, Any], target: float) -> float | None:
    """Seconds (set-up and training, validation left out) to the first validation <= target."""
    point = next((p for p in result.get("curve", []) if p.get("value") is not None and p["value"] <= target), None)
    return None if point is None else point["train_time"] + (result.get("setup_time") or 0.0)


def long_pairs(answer: dict[str, Any], baseline: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """PAIRS pairs at SCALE x the budget: the baseline's whole run, then the answer until it
    reaches the baseline's best val_loss (or its whole run), each pair on its own seed."""
    from autotune.metrics import Metric

    metric, steps, rows = Metric.named("val_loss"), BUDGET_STEPS * SCALE, []
    for i in range(PAIRS):
        base = common.run_config("tinylm", baseline, {"steps": steps}, seed=seed * 100 + i, metric=metric,
                                 eval_every_steps=EVAL_EVERY)
        values = [p["value"] for p in base.get("curve", []) if p.get("value") is not None]
        if base.get("status") != "ok" or not values:
            rows.append({"error": f"baseline {base.get('status')}"})
            continue
        best = min(values)
        pick = common.run_config("tinylm", answer, {"steps": steps}, seed=seed * 100 + i, metric=metric,
                                 eval_every_steps=EVAL_EVERY, target=best, stop_at_target=True)
        base_time, pick_time = time_to(base, best), time_to(pick, best)
        pick_values = [p["value"] for p in pick.get("curve", []) if p.get("value") is not None]
        rows.append({"baseline_best": best, "baseline_time": base_time, "answer_time": pick_time,
                     "answer_final": pick_values[-1] if pick_values else None,
                     "speedup": base_time / pick_time if base_time and pick_time else None,
                     "load": os.getloadavg()[0]})
        common.log(f"  long pair {i + 1}: baseline best {best:.4f} in {base_time:.1f} s, answer "
                   + (f"{pick_time:.1f} s ({rows[-1]['speedup']:.2f}x)" if pick_time else
                      f"never (ends at {rows[-1]['answer_final']})"))
    return rows


def summary(row: dict[str, Any]) -> dict[str, Any]:
    report = row.get("report") or {}
    conf, speedups = report.get("confirmation") or {}, report.get("speedups") or {}
    steps = [s.get("ratio") for s in (report.get("why_faster") or {}).get("steps", []) if s.get("ratio")]
    longs = [p["speedup"] for p in row.get("long", []) if p.get("speedup")]
    never = sum(1 for p in row.get("long", []) if "speedup" in p and p["speedup"] is None)
    out = {"seed": row["seed"], "wall_s": row["wall_s"], "speedup": conf.get("speedup_median"),
           "interval": conf.get("interval"), "confirmed": conf.get("confirmed", False),
           "same_training": speedups.get("same_training"), "recipe": speedups.get("recipe"),
           "min_step": min(steps) if steps else None, "long": statistics.median(longs) if longs else None,
           "long_all": longs, "never": never, "answer": (report.get("answer") or {}).get("settings")
           or (report.get("best") or {}).get("settings"), "load": f"{row['load_before']:.1f}/{row['load_after']:.1f}"}
    out["meets_bar"] = bool(out["confirmed"] and (out["speedup"] or 0) >= BAR_SPEEDUP and out["wall_s"] <= BAR_SECONDS
                            and (out["min_step"] is None or out["min_step"] >= BAR_STEP) and not never
                            and out["long"] is not None and min(longs) >= BAR_LONG
                            and out["same_training"] is not None)
    return out


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--runs", type=int, default=5, help="how many seeds from --seed (default 5)")
    args = p.parse_args()
    out = common.results_dir(args.out)
    subprocess.run(["bash", str(common.REPO / "scripts" / "setup.sh")], check=True, cwd=common.REPO,
                   stdout=subprocess.DEVNULL)
    baseline = common.baseline_of("tinylm")
    rows = []
    for seed in range(args.seed, args.seed + args.runs):
        common.log(f"main job, seed {seed}")
        row = run_demo(seed)
        answer = (row.get("report") or {}).get("answer", {}).get("settings") or \
            ((row.get("report") or {}).get("best") or {}).get("settings")
        row["long"] = long_pairs(answer, baseline, seed) if answer and answer != baseline else []
        rows.append(row)
        s = summary(row)
        common.log(f"  seed {seed}: {common.fmt(s['speedup'])}x {s['interval']} confirmed {s['confirmed']}, "
                   f"{s['wall_s']:.0f} s; same training {common.fmt(s['same_training'])}x x recipe "
                   f"{common.fmt(s['recipe'])}x; at {SCALE}x: {common.fmt(s['long'])}x")
    summaries = [summary(r) for r in rows]
    table = common.md_table(
        ["seed", "confirmed", "interval", "wall (s)", "same training x recipe", "min path step",
         f"at {SCALE}x the budget (pairs)", "load before/after", "answer", "meets bar"],
        [[s["seed"], f"{common.fmt(s['speedup'])}x {'yes' if s['confirmed'] else 'no'}",
          "-" if not s["interval"] else f"{s['interval'][0]:.2f}-{s['interval'][1]:.2f}x", f"{s['wall_s']:.0f}",
          f"{common.fmt(s['same_training'])}x x {common.fmt(s['recipe'])}x", common.fmt(s["min_step"]),
          ", ".join(f"{v:.2f}x" for v in s["long_all"]) + (f", never x{s['never']}" if s["never"] else "") or "-",
          s["load"], common.short_settings(s["answer"] or {}, ["batch_size", "optimizer", "beta2", "learning_rate",
                                                                "precision", "workers", "threads"]),
          s["meets_bar"]] for s in summaries])
    markdown = "\n".join([
        "# The main job at 10x its budget", "",
        f"`{' '.join(['python', *sys.argv])}`; {common.cpu_line()}; {common.uptime_line()}", "", table, "",
        f"{sum(s['meets_bar'] for s in summaries)} of {len(summaries)} meet the bar (confirmed >= {BAR_SPEEDUP}x "
        f"within {BAR_SECONDS:.0f} s, no path step below {BAR_STEP}x, two speedups, >= {BAR_LONG}x at {SCALE}x the "
        f"budget in every pair)."])
    common.write_outputs(out, "long_run", {"rows": rows, "summaries": summaries}, markdown, None)
    print(markdown)


if __name__ == "__main__":
    main()
