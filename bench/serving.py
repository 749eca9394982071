"""A training study, then an inference study from its best, on digits and tinylm: the serving
speedup autotune confirms, with the accuracy guard held. Issue 18's first "must show".

Reproduce (the default: ~25-35 min on an idle 2-core CPU; --quick: fewer trials, ~10 min):

    .venv/bin/python bench/serving.py [--quick] [--workloads digits,tinylm] [--out DIR]

Everything runs through the CLI a user types (a fresh AUTOTUNE_HOME): for each workload

1. `autotune study start --name W-train --workload W ...`: a training study;
2. `autotune study start --name W-serve --task inference --from-study W-train --enqueue ...`:
   the best training configuration is trained once more and saved, trial 0 serves it
   unoptimized, then one enqueued trial per lever (dynamic int8, static int8 on digits, bf16,
   torch.compile, one thread ...: each the unoptimized model with that one setting changed, so
   each is measured alone whatever the sampler does next), then TPE's trials; the best and the
   unoptimized model are re-run `--confirm` times, interleaved, for the confirmed speedup;
3. `autotune study show W-serve --json`: every figure below comes from it.

Reported per workload: each lever's latency p50 and metric drop in the study (one trial each:
the search's figures, each in its own process, so machine drift between processes is in them),
each lever timed together with the unoptimized model (one process serving both, alternating
blocks, 3 processes: autotune.inference.compare, what confirmation uses), the best
configuration, and its confirmed batch-1 latency speedup (median of paired ratios and its
distribution-free interval), with the load average and the CPU flags.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

# the training study per workload, (default, --quick)
TRAINING = {
    "digits": (["--n-trials", "10", "--confirm", "3"], ["--n-trials", "5", "--confirm", "0"]),
    "tinylm": (["--space", "demo", "--budget-steps", "150", "--n-trials", "8", "--confirm", "3"],
               ["--space", "demo", "--budget-steps", "100", "--n-trials", "4", "--confirm", "0"]),
}
# the levers each inference study tries alone, by --enqueue; left out where the knob does not apply
LEVERS = {
    "digits": ["int8_dynamic=true", "int8_static=true", "int8_static=true,serve_compile=default",
               "serve_precision=bf16", "serve_compile=default", "weight_only=int8", "serve_threads=1",
               "serve_pruning=0.5,serve_prune_finetune_steps=100"],
    "tinylm": ["int8_dynamic=true", "serve_precision=bf16", "serve_compile=default", "weight_only=int8",
               "int8_dynamic=true,serve_threads=1", "serve_threads=1",
               "serve_pruning=0.5,serve_prune_finetune_steps=100"],
}


def autotune(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "autotune"
    cmd = [str(script), *args]
    common.log("$ autotune " + " ".join(args))
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    common.log(f"  exit {proc.returncode} after {time.perf_counter() - started:.0f} s")
    if proc.returncode != 0:
        raise SystemExit(f"`autotune {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def applicable(workload: str, levers: list[str]) -> tuple[list[str], dict[str, str]]:
    """The levers whose knobs are available for this workload here, and why the others are not."""
    space = common.autotune_json("space", "show", "--task", "inference", "--workload", workload)
    searched = {p["name"] for p in space["params"]}
    kept, skipped = [], {}
    for lever in levers:
        names = [part.split("=")[0] for part in lever.split(",")]
        missing = [n for n in names if n not in searched]
        if missing:
            skipped[lever] = space.get("excluded", {}).get(missing[0]) or f"{missing[0]} is not a knob here"
        else:
            kept.append(lever)
    return kept, skipped


def one_workload(workload: str, quick: bool, seed: int) -> dict[str, Any]:
    train, serve = f"{workload}-train", f"{workload}-serve"
    load_before = common.load_average()
    started = time.perf_counter()
    autotune("study", "start", "--name", train, "--workload", workload, "--seed", str(seed), "--no-explain",
             "--no-tui", *TRAINING[workload][quick])
    levers, skipped = applicable(workload, LEVERS[workload])
    enqueue = [arg for lever in levers for arg in ("--enqueue", lever)]
    n_trials = len(levers) + (4 if quick else 12)
    confirm = "3" if quick else "7"
    command = ["study", "start", "--name", serve, "--task", "inference", "--from-study", train,
               "--n-trials", str(n_trials), "--confirm", confirm, "--seed", str(seed), "--no-tui", *enqueue]
    autotune(*command)
    shown = common.autotune_json("study", "show", serve)
    load_after = common.load_average()
    from autotune.home import study_dir
    from autotune.study.checkpoint import MODEL_FILE

    model = study_dir(serve) / MODEL_FILE
    together = timed_together(workload, model, levers, repeats=1 if quick else 3)
    return {"workload": workload, "command": "autotune " + " ".join(command), "levers": levers,
            "skipped": skipped, "show": shown, "wall_s": time.perf_counter() - started,
            "load_before": load_before, "load_after": load_after, "together": together,
            "load_together": common.load_average()}


def timed_together(workload: str, model: Path, levers: list[str], repeats: int) -> dict[str, Any]:
    """Each lever against the unoptimized model, timed together as a confirmation pair is (one
    trial process serving both, 6 alternating blocks of 30 calls: autotune.inference.compare),
    `repeats` processes each: the per-process median block ratios."""
    from autotune.inference.types import InferenceOptions
    from autotune.launch.requests import InferenceRequest
    from autotune.launch.trial_process import launch

    out: dict[str, Any] = {}
    for lever in levers:
        overrides = dict(part.split("=") for part in lever.split(","))
        ratios, p50s = [], []
        for i in range(repeats):
            request = InferenceRequest(workload=workload, overrides=overrides,
                                       inference=InferenceOptions(checkpoint=str(model), reference={}, seed=i))
            outcome = launch(request)
            result = outcome.result or {}
            if outcome.status != "ok":
                out[lever] = {"error": f"{outcome.status}: {outcome.error}"}
                break
            ratios.append(statistics.median(result["ratios"]))
            p50s.append((result["reference"]["latency_p50"], result["candidate"]["latency_p50"]))
        else:
            out[lever] = {"ratios": ratios, "p50s": p50s}
        common.log(f"  {workload} {lever} timed together: {out[lever]}")
    return out


def lever_rows(result: dict[str, Any]) -> list[list[Any]]:
    """Each enqueued lever's trial: its own latency p50 (its process), its speed against the
    unoptimized model timed beside it in that process (what the study ranks by), its drop."""
    trials = result["show"]["trials"]
    baseline = next(t for t in trials if t.get("baseline"))
    rows = [["unoptimized (trial 0)", common.fmt(baseline["metrics"]["latency_p50"] * 1e3, 3, " ms"), "1x", "-",
             "yes"]]
    enqueued = [t for t in trials if t.get("enqueued")]
    for lever, t in zip(result["levers"], enqueued):
        m = t.get("metrics") or {}
        if t.get("state") != "COMPLETE":
            rows.append([lever, "-", "-", "-", f"{t.get('state', '?').lower()}: {t.get('reason', '')}"])
            continue
        paired = m.get("paired_speedup")
        rows.append([lever, common.fmt(m.get("latency_p50") * 1e3, 3, " ms"), f"{paired:.2f}x" if paired else "-",
                     f"{m.get('metric_drop', 0) * 100:+.2f}%", "yes" if t.get("feasible", True) else "no"])
    for lever, why in result["skipped"].items():
        rows.append([lever, "-", "-", "-", f"not tried: {why}"])
    return rows


def markdown(results: list[dict[str, Any]], machine: str | None = None) -> str:
    lines = [f"Machine: {machine or common.cpu_line() + '; ' + common.uptime_line()}", ""]
    for r in results:
        s, conf = r["show"]["summary"], r["show"].get("confirmation") or {}
        best = next((t for t in r["show"]["trials"] if t["number"] == s.get("best_number")), None)
        lines += [f"### {r['workload']}", "", f"`{r['command']}`", "",
                  f"load before {r['load_before']}, after {r['load_after']}; {r['wall_s'] / 60:.1f} min", "",
                  common.md_table(["lever (enqueued, alone)", "latency p50, own process",
                                   "vs unoptimized, timed beside it", "metric drop", "within guard"], lever_rows(r)), ""]
        together = r.get("together") or {}
        if together:
            rows = []
            for lever, got in together.items():
                if "error" in got:
                    rows.append([lever, "-", "-", got["error"]])
                    continue
                ratios = got["ratios"]
                ref = statistics.median(p[0] for p in got["p50s"]) * 1e3
                lev = statistics.median(p[1] for p in got["p50s"]) * 1e3
                rows.append([lever, f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                             f"{lev:.3f} ms vs {ref:.3f} ms", ""])
            lines += [f"each lever timed together with the unoptimized model (load after: {r['load_together']}):", "",
                      common.md_table(["lever", "speedup, median (min-max) over processes", "latency p50", "note"],
                                      rows), ""]
        if best is not None:
            base = next(t for t in r["show"]["trials"] if t.get("baseline"))["settings"]
            changed = {k: v for k, v in best["settings"].items() if base.get(k) != v}
            lines.append(f"best: trial {best['number']}, {common.short_settings(changed) or 'the unoptimized model'}, "
                         f"latency p50 {best['metrics']['latency_p50'] * 1e3:.3f} ms, "
                         f"drop {best['metrics'].get('metric_drop', 0) * 100:+.2f}%")
        if conf.get("speedup_median") is not None:
            low, high = conf.get("interval") or (float("nan"), float("nan"))
            verdict = "confirmed" if conf.get("confirmed") else "NOT confirmed"
            lines.append(f"{verdict}: {conf['speedup_median']:.2f}x (min {conf['speedup_min']:.2f}x, max "
                         f"{conf['speedup_max']:.2f}x over {conf['valid_pairs']} pairs; interval "
                         f"{low:.2f}-{high:.2f}x at {conf.get('coverage', float('nan')):.0%})")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--workloads", default="digits,tinylm")
    p.add_argument("--render", type=Path, default=None, metavar="SERVING_JSON",
                   help="print the tables of an earlier run's serving.json, run nothing")
    args = p.parse_args()
    if args.render is not None:
        data = json.loads(args.render.read_text())
        print(markdown(data["results"], data.get("machine_line") or f"{data['machine']} (load: see each workload)"))
        return
    common.scratch_home()
    out = common.results_dir(args.out)
    results = [one_workload(w, args.quick, args.seed) for w in args.workloads.split(",")]
    machine = f"{common.cpu_line()}; {common.uptime_line()}"
    text = markdown(results, machine)
    common.write_outputs(out, "serving", {"results": results, "machine": common.cpu_line(), "machine_line": machine},
                         text, None)
    print(text)


if __name__ == "__main__":
    main()
