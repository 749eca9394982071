"""Run every benchmark into one results folder and summarise it.

Reproduce:

    .venv/bin/python bench/run.py --quick     # reduced forms of 1-5, < 15 min on a 2-core CPU
    .venv/bin/python bench/run.py             # the figures in docs/benchmarks.md (~25 min)
    .venv/bin/python bench/run.py --only overhead,hardware_limit

Writes bench/results/<timestamp>/ (or --out DIR): each benchmark's <name>.json / .md / .png,
environment.json (`autotune hardware --json`, CPU flags, versions, git commit, machine load),
run.log (everything the benchmarks printed), and summary.md / summary.json with the headline
figures, each benchmark's wall time and the machine load (`uptime`) before and after it: the
machine may be shared, and load changes the figures.

Order: outcome (1, and 6 when there is a GPU), hardware_limit (5: it re-measures the best
configurations outcome found), search_efficiency (2), lightning_peer (3), overhead (4, which also
runs bench/trial_launch.py for launch latency when that file is present). A benchmark that fails is
reported and the others still run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

BENCHMARKS = ("outcome", "hardware_limit", "search_efficiency", "lightning_peer", "overhead")
QUICK_LIMIT = 15 * 60


def environment(quick: bool) -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=common.REPO, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True,
                           cwd=common.REPO, check=False).stdout.strip()
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "hardware": common.hardware_fingerprint(),
        "versions": common.versions(),
        "git_commit": commit + ("+uncommitted changes" if dirty else ""),
        "uptime_start": common.uptime_line(),
    }


def run_one(name: str, out: Path, quick: bool, seed: int, log_file: Any) -> dict[str, Any]:
    cmd = [sys.executable, str(common.HERE / f"{name}.py"), "--out", str(out), "--seed", str(seed)]
    if quick:
        cmd.append("--quick")
    env = {k: v for k, v in os.environ.items() if k != "AUTOTUNE_BENCH_HOME"}  # each gets its own home
    before = common.uptime_line()
    common.log(f"=== {name}: {' '.join(Path(c).name if i < 2 else c for i, c in enumerate(cmd))}")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=common.REPO)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        log_file.write(line)
    proc.wait()
    wall = time.perf_counter() - started
    status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    common.log(f"=== {name}: {status} in {wall:.0f} s")
    return {"name": name, "status": status, "wall": wall, "uptime_before": before,
            "uptime_after": common.uptime_line()}


def headline(name: str, data: dict[str, Any]) -> list[str]:
    """One or a few lines of the figures that matter, from a benchmark's JSON."""
    h = data.get("headline", {})
    f, fs = common.fmt, common.fmt_stats
    if name == "outcome":
        lines = []
        for key, value in h.items():
            if key == "gpu":
                continue
            for config, s in value.items():
                parts = []
                if "tta_speedup" in s:
                    parts.append(f"time-to-accuracy speedup {fs(s['tta_speedup'], unit='x')}"
                                 + (f", target missed in {s['missed']} run(s)" if s.get("missed") else ""))
                parts.append(f"throughput {fs(s['throughput_ratio'], unit='x')}")
                lines.append(f"{key}, {config} vs baseline: " + "; ".join(parts))
        lines.append(f"GPU: {h.get('gpu')}")
        return lines
    if name == "search_efficiency":
        return [
            f"{h['grid_configs']}-configuration grid (full grid costs {h['grid_cost_seconds']:.0f} s), {h['seeds']} seeds: "
            f"tuning time to 95% of the grid's best, median (min-max): autotune {fs(h['autotune_time_to_95'], unit=' s')}, "
            f"random {fs(h['random_time_to_95'], unit=' s')}, grid {fs(h['grid_time_to_95'], unit=' s')}",
            f"trials to 95%: autotune {fs(h['autotune_trials_to_95'])}, random {fs(h['random_trials_to_95'])}, "
            f"grid {fs(h['grid_trials_to_95'])}",
            f"autotune / random = {f(h['autotune_over_random'])} (goal <= 0.5: {'met' if h['goal_met'] else 'NOT met'}); "
            f"ablations: TPE without pruning {fs(h['tpe, no pruning_time_to_95'], unit=' s')}, TPE with only the "
            f"slower-than-best rule {fs(h['tpe, time rule only_time_to_95'], unit=' s')}",
        ]
    if name == "lightning_peer":
        pick = h["lightning_pick"]
        return [
            f"Lightning picked batch {pick['batch_size']}, lr {pick['learning_rate']:.3g} in {h['lightning_tuning_seconds']:.0f} s; "
            f"autotune tuned {h['autotune_tuning_seconds']:.0f} s",
            f"time-to-accuracy (s): Lightning pick {fs(h['lightning_tta'])} (missed {h['lightning_missed']}), "
            f"autotune best {fs(h['autotune_tta'])} (missed {h['autotune_missed']}), baseline {fs(h['baseline_tta'])}",
        ]
    if name == "overhead":
        lines = [
            f"inside training+validation: {100 * h['inside_fraction']:.1f}% of the wall time of a {h['n_trials']}-trial "
            f"study (training alone {100 * h['train_fraction']:.1f}%; trials >= {h['min_trial_train']:.1f} s of training; "
            f"goal >= 95%: {'met' if h['goal_met'] else 'NOT met'}); {100 * h['inside_fraction_steady']:.1f}% leaving out "
            f"the one-time forkserver boot ({h['forkserver_boot']:.1f} s); per-trial overhead median "
            f"{h['per_trial_overhead_median']:.2f} s",
            f"storage per trial: loop {h['storage_ms_per_trial_loop_random']:.0f} ms (random) / "
            f"{h['storage_ms_per_trial_loop_tpe']:.0f} ms (TPE); calls made by the study {h['storage_ms_per_trial_in_study']:.0f} ms",
        ]
        if h.get("launch_warm_median") is not None:
            lines.append(f"trial launch to user code: cold {h['launch_cold_median']:.2f} s, warm {h['launch_warm_median']:.3f} s (median)")
        return lines
    if name == "hardware_limit":
        lines = [f"peak matmul: fp32 {h['peak_fp32_gflops']:.0f} GFLOP/s, bf16 {h['peak_bf16_gflops']:.0f} GFLOP/s"]
        for key, value in h.items():
            if isinstance(value, dict):
                lines.append(f"{key} ({value['precision']}): {value['achieved_gflops']:.2f} GFLOP/s = "
                             f"{100 * (value['fraction'] or 0):.2f}% of peak")
        return lines
    return [json.dumps(h)]


def summarise(out: Path, env: dict[str, Any], runs: list[dict[str, Any]], total: float, quick: bool) -> None:
    hw = env["hardware"]["autotune_hardware"]
    lines = [
        f"# Benchmark results ({env['mode']})",
        "",
        f"- date: {env['date']}; total wall time {total / 60:.1f} min"
        + (f" (quick limit {QUICK_LIMIT // 60} min: {'met' if total <= QUICK_LIMIT else 'EXCEEDED'})" if quick else ""),
        f"- command: `python bench/run.py{' --quick' if quick else ''}`; git {env['git_commit']}",
        f"- hardware (`autotune hardware --json`): {hw['device_type']} {hw['device_name']}, {hw['cpu_count']} cores "
        f"({hw['cpu_name']}), {hw['memory_bytes'] / 2**30:.1f} GiB, torch {hw['torch_version']}, precisions "
        f"{', '.join(hw['precisions'])}; CPU flags {', '.join(env['hardware']['cpu_flags'])}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- load at start: `{env['uptime_start']}`",
        "",
        common.md_table(["benchmark", "status", "wall (s)", "load before -> after (1 min)"],
                        [[r["name"], r["status"], f"{r['wall']:.0f}",
                          f"{_load(r['uptime_before'])} -> {_load(r['uptime_after'])}"] for r in runs]),
        "",
        "## Headline figures",
        "",
    ]
    summary: dict[str, Any] = {"environment": env, "runs": runs, "total_wall": total, "headlines": {}}
    for r in runs:
        path = out / f"{r['name']}.json"
        if not path.exists():
            lines.append(f"- **{r['name']}**: no result ({r['status']})")
            continue
        data = json.loads(path.read_text())
        summary["headlines"][r["name"]] = data.get("headline")
        lines.append(f"- **{r['name']}** ([table]({r['name']}.md), [plot]({r['name']}.png), [data]({r['name']}.json)):")
        lines += [f"  - {line}" for line in headline(r["name"], data)]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def _load(uptime: str) -> str:
    return uptime.rsplit("load average:", 1)[-1].split(",")[0].strip() if "load average" in uptime else "?"


def main(argv: list[str] | None = None) -> None:
    p = common.parser(__doc__)
    p.add_argument("--only", default=None, help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    args = p.parse_args(argv)
    common.scratch_home()
    out = common.results_dir(args.out)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    started = time.perf_counter()
    common.log(f"results folder: {out}")
    env = environment(args.quick)
    (out / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
    common.log(f"load: {env['uptime_start']}")
    runs = []
    with open(out / "run.log", "a") as log_file:
        for name in names:
            runs.append(run_one(name, out, args.quick, args.seed, log_file))
            log_file.flush()
    total = time.perf_counter() - started
    summarise(out, env, runs, total, args.quick)
    common.log(f"all done in {total / 60:.1f} min; summary: {out / 'summary.md'}")
    if args.quick and total > QUICK_LIMIT:
        common.log(f"WARNING: --quick took longer than {QUICK_LIMIT // 60} min (machine load: {common.uptime_line()})")
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
