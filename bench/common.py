"""Shared helpers of the benchmarks: results folders, scratch state, measured runs, tables, plots.

Every benchmark writes `<name>.json`, `<name>.md` and `<name>.png` into one results folder
(`bench/results/<timestamp>/` unless `--out DIR`), and runs with AUTOTUNE_HOME pointing at a
fresh temporary directory so it never reads or writes a user's studies.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import itertools
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
_STARTED = time.perf_counter()
_RUN_NUMBER = itertools.count()


# setup -----------------------------------------------------------------------------------------


def scratch_home() -> Path:
    """Point AUTOTUNE_HOME at a fresh temporary directory (removed at exit) and return it.

    Benchmarks must not touch `~/.autotune`, and must not see studies left by other runs.
    """
    current = os.environ.get("AUTOTUNE_BENCH_HOME")
    if current:  # already set up in this process
        return Path(current)
    home = Path(tempfile.mkdtemp(prefix="autotune-bench-"))
    os.environ["AUTOTUNE_HOME"] = str(home)
    os.environ["AUTOTUNE_BENCH_HOME"] = str(home)
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: --quick, --out DIR, --seed."""
    first = (doc or "").strip().splitlines()[0] if doc else None
    p = argparse.ArgumentParser(description=first, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="reduced form (the one `bench/run.py --quick` runs)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: a new bench/results/<timestamp>/)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    return p


def results_dir(out: Path | None) -> Path:
    if out is None:
        out = RESULTS / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    return out


def log(message: str) -> None:
    """Progress on stderr, with the wall clock and the time since this process started."""
    now = _dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{now} +{time.perf_counter() - _STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


# the machine -----------------------------------------------------------------------------------


def load_average() -> dict[str, float]:
    """1/5/15-minute load averages (the machine is shared: figures need them alongside)."""
    one, five, fifteen = os.getloadavg()
    return {"1min": round(one, 2), "5min": round(five, 2), "15min": round(fifteen, 2)}


def uptime_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


WANTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


def cpu_line() -> str:
    """"AMD EPYC, 2 cores, avx2 avx512f": what to print beside a timing (machines differ)."""
    from autotune.hardware import detect

    hardware = detect("cpu")
    flags = " ".join(f for f in WANTED_FLAGS if f in cpu_flags()) or "no avx2"
    return f"{hardware.cpu_name}, {hardware.cpu_count} cores, {flags}"


def home_processes(home: Path) -> list[Any]:
    """Live processes started for AUTOTUNE_HOME `home` (they inherit it), this one aside."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE \
                    and proc.environ().get("AUTOTUNE_HOME") == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def autotune_json(*args: str) -> Any:
    """`autotune ARGS --json` run as users run it (this interpreter's entry point), parsed;
    SystemExit with the end of its stderr when it fails."""
    script = Path(sys.executable).parent / "autotune"
    cmd = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from autotune.cli import main; sys.exit(main())"]
    proc = subprocess.run([*cmd, *args, "--json"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"`autotune {' '.join(args)} --json` failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def hardware_fingerprint() -> dict[str, Any]:
    """`autotune hardware --json`, run as the command users run, plus CPU flags that matter here."""
    fingerprint = autotune_json("hardware")
    flags = cpu_flags()
    return {
        "autotune_hardware": fingerprint,
        "cpu_flags": [f for f in WANTED_FLAGS if f in flags],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("autotune", "torch", "torchvision", "optuna", "lightning", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# figures ---------------------------------------------------------------------------------------


def stats(values: Iterable[float | None]) -> dict[str, Any]:
    """median, min, max and n of the values that exist (None: a run that gave no value)."""
    given = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not given:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(given), "min": min(given), "max": max(given), "n": len(given)}


def fmt(value: float | None, digits: int = 3, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.{digits}g}{unit}"


def fmt_stats(s: dict[str, Any], digits: int = 3, unit: str = "") -> str:
    """'1.52x (1.40-1.61, n=5)'-style: median (min-max)."""
    if not s or s.get("median") is None:
        return "-"
    if s["n"] == 1:
        return fmt(s["median"], digits, unit)
    return f"{fmt(s['median'], digits, unit)} ({fmt(s['min'], digits)}-{fmt(s['max'], digits)}, n={s['n']})"


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """`items` started at index `shift` (mod its length) and wrapped: each round of an
    interleaved benchmark runs its configurations in a rotated order, so that a drift in the
    machine's load does not always fall on the same one."""
    k = shift % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def short_settings(settings: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    shown = {k: v for k, v in settings.items() if keys is None or k in keys}
    parts = []
    for key, value in shown.items():
        if isinstance(value, float):
            value = f"{value:.3g}"
        parts.append(f"{key}={value}")
    return " ".join(parts)


def write_outputs(out: Path, name: str, data: dict[str, Any], markdown: str, figure: Any | None) -> None:
    """`<name>.json`, `<name>.md` and (when a figure is given) `<name>.png` in `out`."""
    data = {
        "benchmark": name,
        "written": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        **data,
    }
    (out / f"{name}.json").write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    if figure is not None:
        figure.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
    log(f"wrote {out / name}.json, .md" + (", .png" if figure is not None else ""))


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def not_run_figure(text: str) -> Any:
    """A PNG that says why there is no plot (rather than no PNG at all)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    return fig


# running configurations through autotune --------------------------------------------------------


def resolved(workload: str, overrides: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """The full settings autotune would run for `overrides` (baseline recipe filled in)."""
    from autotune.settings import resolve_settings
    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.workloads import load_workload

    registry = load_registry()
    hardware = detect(device)
    return resolve_settings(registry, hardware, load_workload(workload, registry), overrides)


def baseline_of(workload: str, device: str | None = None) -> dict[str, Any]:
    from autotune.settings import baseline_settings
    from autotune.hardware import detect
    from autotune.registry import load_registry
    from autotune.workloads import load_workload

    registry = load_registry()
    hardware = detect(device)
    return baseline_settings(registry, hardware, load_workload(workload, registry))


def run_config(
    workload: str,
    overrides: dict[str, Any],
    budget: dict[str, Any],
    *,
    seed: int = 0,
    target: float | None = None,
    stop_at_target: bool = False,
    evals_per_epoch: int = 1,
    evals_per_budget: int = 0,
    eval_every_steps: int | None = None,
    metric: Any | None = None,
    device: str | None = None,
    stop_when: Callable[[dict[str, Any]], bool] | None = None,
    log_path: str | None = None,
) -> dict[str, Any]:
    """One measured training run in its own process, exactly as a study trial runs
    (autotune.launch.trial_process.launch -> autotune.run.engine.run).

    Returns the engine's RunResult as a dict plus parent-side wall clock: `launch_wall` (launch
    call to the child's exit, so process start and teardown included) and, per validation the
    child reported, `eval_walls` (seconds from the launch call to the report). `stop_when(point)`
    returning True stops the run after that validation, as a pruner would. `metric` (an
    autotune.metrics.Metric; default accuracy, higher is better) is what the run's `metric_value`,
    curve and target are in: a workload judged by another (tinylm: val_loss) must pass its own.
    """
    from autotune.launch.requests import TrainingRequest
    from autotune.launch.trial_process import launch
    from autotune.run.types import RunOptions

    if log_path is None:  # the child's own output (its settings line, tracebacks) goes here
        logs = Path(os.environ.get("AUTOTUNE_HOME", tempfile.gettempdir())) / "logs" / "bench"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = str(logs / f"run-{next(_RUN_NUMBER)}.log")
    request = TrainingRequest(
        workload=workload, overrides=dict(overrides), budget=dict(budget), device=device, log_path=log_path,
        options=RunOptions(seed=seed, target=target, stop_at_target=stop_at_target, evals_per_epoch=evals_per_epoch,
                           evals_per_budget=evals_per_budget, eval_every_steps=eval_every_steps,
                           **({"metric": metric.name, "direction": metric.direction} if metric is not None else {})),
    )
    walls: list[float] = []
    started = time.perf_counter()

    def on_eval(point: dict[str, Any]) -> bool:
        walls.append(time.perf_counter() - started)
        return bool(stop_when(point)) if stop_when is not None else False

    outcome = launch(request, on_eval=on_eval)
    total = time.perf_counter() - started
    result = dict(outcome.result or {})
    result.update(
        status=outcome.status, error=outcome.error, launch_wall=total, eval_walls=walls,
        launch_seconds=outcome.launch_seconds,
    )
    if outcome.status not in ("ok", "pruned"):
        log(f"  run {short_settings(overrides)} -> {outcome.status}: {outcome.error}\n{outcome.log_tail[-1500:]}")
    return result


def warm_up(workload: str = "digits") -> None:
    """Boot autotune's forkserver (it imports torch once) with a one-step run, so the first
    measured run does not pay for it. Studies pay it once per runner process; see overhead.py."""
    started = time.perf_counter()
    run_config(workload, {}, {"steps": 1})
    log(f"trial launcher warmed up ({time.perf_counter() - started:.1f} s)")


def run_study(spec: Any, *, confirm: bool = False, instrument: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Run a real study (prepare -> StudyRunner) and return its report, the Optuna study, the
    runner and `wall`: the wall time of `runner.open()` + `runner.run()` (tuning time; with
    confirm=False the confirmation is not in it). `instrument(prepared)` may wrap the storage
    before the study starts. Progress lines go to stderr."""
    from autotune.storage.local import Store
    from autotune.study.prepare import prepare
    from autotune.study.runner import StudyRunner

    from autotune.study.events import TRIAL_FINISHED, StudyEvent

    def reporter(event: StudyEvent) -> None:
        data = event.data
        if event.kind in TRIAL_FINISHED:
            value = data.get("value")
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
            dur = data.get("duration")
            log(f"  trial {data['number']:>3} {data['state']:<8} value={shown:<10} "
                f"{'%.1fs' % dur if dur else ''} {data.get('reason') or ''}".rstrip())

    prepared = prepare(spec)
    if instrument is not None:
        instrument(prepared)
    runner = StudyRunner(prepared, Store(), listeners=[reporter])
    started = time.perf_counter()
    runner.open()
    opened = time.perf_counter()
    report = runner.run(confirm=confirm)
    wall = time.perf_counter() - started
    return {"report": report, "study": runner.study, "runner": runner, "wall": wall, "prepared": prepared,
            "open_seconds": opened - started}
