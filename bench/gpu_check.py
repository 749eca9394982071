"""The CUDA half of the GPU check (issue 17); run it through `bash bench/gpu_check.sh`, which runs
the `-m gpu` tests first and hands their JUnit file here.

    .venv/bin/python bench/gpu_check.py --out DIR [--pytest-xml F --pytest-rc N]   # on CUDA
    .venv/bin/python bench/gpu_check.py --out DIR --dry --reason "no CUDA"         # anywhere
    .venv/bin/python bench/gpu_check.py --out DIR --rehearse                       # on a CPU

Checks, each real training on the GPU (synthetic-resnet18, CIFAR-shaped 3x32x32, in this process
unless said): fp16 autocast with a GradScaler, bf16 autocast, cudnn.benchmark, TF32 through
matmul_precision, fused optimizers (optimizer_impl), torch.compile mode reduce-overhead (CUDA
graphs), the out-of-memory micro-batch retry (micro_batches, under a memory cap set from a
measured peak), peak CUDA memory, the per-GPU trial pool (a trial launched in its own process with
a lease's CUDA_VISIBLE_DEVICES), serving a trained model (`trial run --save-model`, then `trial
serve` as fp32, fp16 and through TensorRT when torch-tensorrt is installed), a study of ~20
trials with confirmation through the `autotune` CLI, and a tinylm `--keep-recipe` study (systems
knobs only; its curve check and its speedup, all same training). A check whose knob `autotune plugins --json` does not list is skipped with a line.

Modes: on CUDA every check (~5 minutes on one H100/H200, the study bounded by --study-seconds);
`--dry` imports no torch and runs nothing: it writes the same files, marked dry, with each check
skipped and why (CI runs this, tests/test_gpu_check.py); `--rehearse` runs every check on this CPU
at toy size with the CUDA-only parts skipped, to test this script without a GPU.

Writes gpu_check.json and gpu_check.md into --out (rewritten after every check, so a run cut short
still leaves what it did), and copies them into $OUT when that is set.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable, Iterator

import common

CHECKS: list[tuple[str, tuple[str, ...]]] = [  # (check, knobs it needs)
    ("gpu tests (pytest -m gpu)", ()),
    ("fp16 autocast + GradScaler", ("precision",)),
    ("bf16 autocast", ("precision",)),
    ("cudnn.benchmark", ("cudnn_benchmark",)),
    ("TF32 (matmul_precision=high)", ("matmul_precision",)),
    ("fused optimizers", ("optimizer", "optimizer_impl")),
    ("torch.compile reduce-overhead (CUDA graphs)", ("torch_compile",)),
    ("OOM micro-batch retry", ("micro_batches",)),
    ("peak CUDA memory", ("batch_size",)),
    ("per-GPU trial pool", ()),
    ("serving: fp16 and TensorRT vs fp32 (trial serve)", ("serve_precision", "tensorrt")),
    ("study: synthetic-resnet18, ~20 trials + confirmation", ()),
    ("study --keep-recipe: tinylm, systems knobs only", ()),
]


class Report:
    """The check's results, written to gpu_check.json / .md after every change."""

    def __init__(self, out: Path, mode: str, reason: str | None, knobs: list[str]) -> None:
        self.out, self.started = out, time.perf_counter()
        self.data: dict[str, Any] = {
            "benchmark": "gpu_check", "mode": mode, "dry": mode == "dry", "reason": reason,
            "command": " ".join([Path(sys.executable).name, *sys.argv]), "uptime": common.uptime_line(),
            "cpu_flags": sorted(common.cpu_flags() & set(common.WANTED_FLAGS)), "knobs": knobs,
            "checks": [], "complete": False,
        }

    def add(self, name: str, status: str, detail: str, seconds: float = 0.0, **data: Any) -> None:
        self.data["checks"].append({"name": name, "status": status, "detail": detail,
                                    "seconds": round(seconds, 1), **data})
        print(f"gpu_check: {status if status != 'skip' else 'skipped'} {name}: {detail}", flush=True)
        self.write()

    def write(self, complete: bool = False) -> None:
        self.data["complete"] = complete
        self.data["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        self.data["summary"] = {s: sum(c["status"] == s for c in self.data["checks"]) for s in ("pass", "fail", "skip")}
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(self.markdown())
        target = os.environ.get("OUT")
        if target and Path(target).resolve() != self.out.resolve():
            Path(target).mkdir(parents=True, exist_ok=True)
            for name in ("gpu_check.json", "gpu_check.md"):
                shutil.copyfile(self.out / name, Path(target) / name)

    def markdown(self) -> str:
        d = self.data
        title = "GPU check" + (f" (DRY: {d['reason']})" if d["dry"]
                               else " (rehearsal on CPU)" if d["mode"] == "rehearse" else "")
        s = d["summary"]
        lines = [f"# {title}", "", f"{s['pass']} passed, {s['fail']} failed, {s['skip']} skipped"
                 + ("" if d["complete"] else " (incomplete: the run was cut short)") + f"; {d['elapsed_s']} s.", "",
                 f"- machine: {d.get('device', '-')}; CPU flags: {' '.join(d['cpu_flags']) or '-'}",
                 f"- `{d['uptime']}`", f"- command: `{d['command']}`", "",
                 common.md_table(["check", "result", "s", "detail"],
                                 [(c["name"], c["status"], c["seconds"], c["detail"].replace("|", "/"))
                                  for c in d["checks"]])]
        return "\n".join(lines) + "\n"


def listed_knobs() -> list[str]:
    """Knob names `autotune plugins --json` lists (built-ins and installed plugins)."""
    return [k["name"] for plugin in common.autotune_json("plugins", "--task", "all") for k in plugin["knobs"]
            if not k.get("disabled")]


def missing(knobs: list[str], needed: tuple[str, ...]) -> str | None:
    absent = [k for k in needed if k not in knobs]
    return f"knob {', '.join(repr(k) for k in absent)} not loaded (autotune plugins --json)" if absent else None


def dry(report: Report, reason: str) -> None:
    for name, needed in CHECKS:
        why = missing(report.data["knobs"], needed)
        report.add(name, "skip", reason + (f"; also {why}" if why else ""))


def pytest_check(report: Report, xml: Path | None, rc: int | None) -> None:
    name = CHECKS[0][0]
    if xml is None or not xml.exists():
        report.add(name, "skip", "not run here (bench/gpu_check.sh runs it first)")
        return
    cases = ET.parse(xml).getroot().iter("testcase")
    outcome = {"passed": [], "failed": [], "skipped": []}
    for case in cases:
        label = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        kind = "failed" if case.find("failure") is not None or case.find("error") is not None \
            else "skipped" if case.find("skipped") is not None else "passed"
        outcome[kind].append(label)
    detail = ", ".join(f"{len(v)} {k}" for k, v in outcome.items()) + (f" (pytest exit {rc})" if rc else "")
    if outcome["failed"]:
        detail += ": " + ", ".join(outcome["failed"])
    status = "fail" if outcome["failed"] or (rc not in (0, 5, None)) else "pass"
    report.add(name, status, detail, tests=outcome)


class Gpu:
    """What the in-process checks share: the registry, this device's fingerprint, a small
    CIFAR-shaped workload and sizes (toy sizes when rehearsing on a CPU)."""

    def __init__(self, rehearse: bool) -> None:
        import torch

        from autotune.hardware import detect
        from autotune.plugins.workloads.catalog import synthetic_resnet18
        from autotune.registry import load_registry

        self.torch, self.rehearse = torch, rehearse
        self.device = "cpu" if rehearse else "cuda"
        self.cuda = self.device == "cuda"
        self.registry, self.hardware = load_registry(), detect(self.device)
        self.workload = synthetic_resnet18(train_size=256 if rehearse else 2048, val_size=64 if rehearse else 256)
        self.steps = 4 if rehearse else 30
        self.batch = 32 if rehearse else 256

    def settings(self, **overrides: Any) -> dict[str, Any]:
        from autotune.settings import resolve_settings

        return resolve_settings(self.registry, self.hardware, self.workload, {"batch_size": self.batch, **overrides})

    @contextlib.contextmanager
    def plan(self, **overrides: Any) -> Iterator[Any]:
        """The plan the knobs build for these settings; its cleanups run when the block ends
        (the knobs change process-wide state: threads, cuDNN and matmul flags)."""
        from autotune.run.local import build_plan

        plan = build_plan(self.registry, self.hardware, self.workload, self.settings(**overrides),
                          self.torch.device(self.device))
        try:
            yield plan
        finally:
            for cleanup in plan.cleanups:
                cleanup()

    def run(self, steps: int | None = None, **overrides: Any) -> Any:
        """One real run; raises AssertionError naming the settings unless it ends ok."""
        from autotune.budget import Budget
        from autotune.run import engine

        result = engine.run(self.workload, self.settings(**overrides), self.registry, self.hardware,
                            Budget(steps=steps or self.steps), device=self.device)
        assert result.status == "ok", f"{overrides}: {result.status}: {result.error}"
        loss = result.val_loss
        assert loss is not None and math.isfinite(loss), f"{overrides}: val_loss {loss}"
        return result


def ms(result: Any) -> str:
    return f"{result.step_time * 1000:.2f} ms/step" if result.step_time else "-"


def check_fp16(g: Gpu) -> str:
    with g.plan(precision="fp16") as plan:
        if g.cuda:
            assert plan.grad_scaler and plan.autocast_dtype == g.torch.float16, "fp16 on CUDA must use a GradScaler"
    if not g.cuda:
        raise Skip("fp16 autocast on a CPU is ~35x slower (no fp16 convolutions): not rehearsed")
    base, half = g.run(precision="fp32"), g.run(precision="fp16")
    return f"GradScaler on; fp32 {ms(base)}, fp16 {ms(half)} ({base.step_time / half.step_time:.2f}x)"


def check_bf16(g: Gpu) -> str:
    if "bf16" not in g.hardware.precisions:
        raise Skip(f"bf16 not supported on {g.hardware.device_name}")
    with g.plan(precision="bf16") as plan:
        assert plan.autocast_dtype == g.torch.bfloat16 and not plan.grad_scaler
    base, bf16 = g.run(precision="fp32"), g.run(precision="bf16")
    return f"fp32 {ms(base)}, bf16 {ms(bf16)} ({base.step_time / bf16.step_time:.2f}x)"


def check_cudnn(g: Gpu) -> str:
    from autotune.knob import exclusion

    reason = exclusion(g.registry.knob("cudnn_benchmark"), g.hardware)
    if reason:
        raise Skip(reason)
    before = g.torch.backends.cudnn.benchmark
    with g.plan(cudnn_benchmark=True):
        assert g.torch.backends.cudnn.benchmark is True
    assert g.torch.backends.cudnn.benchmark is before, "cudnn.benchmark not restored"
    off, on = g.run(cudnn_benchmark=False), g.run(cudnn_benchmark=True)
    return f"set and restored; off {ms(off)}, on {ms(on)}"


def check_tf32(g: Gpu) -> str:
    from autotune.knob import exclusion

    reason = exclusion(g.registry.knob("matmul_precision"), g.hardware)
    if reason:
        raise Skip(reason)
    torch = g.torch
    before = torch.get_float32_matmul_precision()
    with g.plan(matmul_precision="high"):
        assert torch.get_float32_matmul_precision() == "high", torch.get_float32_matmul_precision()
    assert torch.get_float32_matmul_precision() == before, "matmul precision not restored"
    highest, high = g.run(matmul_precision="highest"), g.run(matmul_precision="high")
    n = 1024 if g.rehearse else 8192
    a, b = torch.randn(n, n, device=g.device), torch.randn(n, n, device=g.device)
    times = {}
    for mode in ("highest", "high"):
        torch.set_float32_matmul_precision(mode)
        try:
            times[mode] = min(_timed(lambda: a @ b, g) for _ in range(5))
        finally:
            torch.set_float32_matmul_precision(before)
    return (f"set and restored; resnet18 highest {ms(highest)}, high {ms(high)}; {n}^3 matmul "
            f"{2 * n**3 / times['highest'] / 1e12:.1f} vs {2 * n**3 / times['high'] / 1e12:.1f} TFLOP/s")


def _timed(fn: Callable[[], Any], g: Gpu) -> float:
    if g.cuda:
        g.torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if g.cuda:
        g.torch.cuda.synchronize()
    return time.perf_counter() - t


def check_fused(g: Gpu) -> str:
    from autotune.errors import Unsupported, UsageError

    done, refused = [], []
    model = g.torch.nn.Linear(8, 8).to(g.device)
    for optimizer in ("sgd", "adam", "adamw"):
        try:
            with g.plan(optimizer=optimizer, optimizer_impl="fused") as plan:
                built = plan.optimizer_factory(model.parameters(), **plan.optimizer_kwargs)
        except (Unsupported, UsageError) as exc:
            refused.append(f"{optimizer}: {exc}")
            continue
        assert built.defaults.get("fused") is True, f"{optimizer}: fused flag is {built.defaults.get('fused')}"
        result = g.run(optimizer=optimizer, optimizer_impl="fused")
        done.append(f"{optimizer} {ms(result)}")
    assert done, "no optimizer accepted optimizer_impl=fused: " + "; ".join(refused)
    return "fused=True and trained: " + ", ".join(done) + (f"; refused: {'; '.join(refused)}" if refused else "")


def check_compile(g: Gpu) -> str:
    params = {p.name: p for p in g.registry.knob("torch_compile").params(g.hardware)}
    mode = "reduce-overhead" if g.cuda else "default"
    if "compile_mode" not in params or mode not in params["compile_mode"].allowed_choices:
        raise Skip(f"torch_compile has no compile_mode '{mode}' here (settings: {', '.join(params)})")
    if g.rehearse:
        raise Skip("a cold compile takes ~30 s on this CPU: not rehearsed")
    eager = g.run(steps=60)
    compiled = g.run(steps=60, torch_compile=True, compile_mode=mode)
    one_time = ", ".join(f"{k} {v:.1f} s" for k, v in (compiled.one_time or {}).items())
    return (f"mode {mode}: eager {ms(eager)}, compiled {ms(compiled)} ({eager.step_time / compiled.step_time:.2f}x); "
            f"one-time {one_time or '-'}; notes {compiled.notes.get('torch_compile')}")


def check_oom_retry(g: Gpu) -> str:
    if not g.cuda:
        raise Skip("out-of-memory is a CUDA error: a cap on CUDA memory triggers it")
    torch, big = g.torch, 1024
    small_peak = g.run(steps=3, batch_size=8, micro_batches=1).peak_memory_bytes
    big_peak = g.run(steps=3, batch_size=big, micro_batches=1).peak_memory_bytes
    cap = small_peak + (big_peak - small_peak) // 2  # half the batch's activations fit
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        result = g.run(steps=3, batch_size=big, micro_batches=1)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    notes = {k: v for k, v in result.notes.items() if "micro" in k}
    assert notes.get("micro_batch_retries"), f"ok under the cap, but no micro-batch retry noted: {result.notes}"
    return (f"batch {big} under a {cap / 2**20:.0f} MiB cap (its peak uncapped: {big_peak / 2**20:.0f} MiB) "
            f"trained after retrying: {notes}")


def check_peak(g: Gpu) -> str:
    small, big = (8, 64) if g.rehearse else (64, 512)
    peaks = {b: g.run(steps=5, batch_size=b).peak_memory_bytes for b in (small, big)}
    assert all(p and p > 0 for p in peaks.values()), f"no peak memory reported: {peaks}"
    if g.cuda:  # on a CPU the figure is the process's peak RSS, which never goes down
        assert peaks[big] > peaks[small], f"peak memory did not grow with the batch: {peaks}"
    return ", ".join(f"batch {b}: {p / 2**20:.0f} MiB" for b, p in peaks.items())


def check_pool(g: Gpu) -> str:
    from autotune.devices import DevicePool
    from autotune.launch.requests import TrainingRequest
    from autotune.launch.trial_process import launch

    pool = DevicePool.for_cuda() if g.cuda else DevicePool(())
    if g.cuda:
        assert pool.slots == g.torch.cuda.device_count(), f"{pool.slots} slots for {g.torch.cuda.device_count()} GPUs"
    with pool.lease() as env:
        request = TrainingRequest(workload="synthetic-resnet18", overrides={"batch_size": g.batch},
                                  budget={"steps": g.steps}, device=g.device, env=dict(env))
        outcome = launch(request)
    assert outcome.status == "ok", f"{outcome.status}: {outcome.error}"
    device = (outcome.result or {}).get("device")
    assert str(device).startswith(g.device), f"the trial ran on {device}"
    return f"{pool.slots} slot(s); a trial with {env or 'no GPU lease'} ran on {device}, ok"


def check_serving(g: Gpu, out: Path) -> str:
    """A synthetic-resnet18 model trained and saved by `trial run --save-model`, then served by
    `trial serve` as fp32, fp16 and through TensorRT: batch-1 latency and the metric's drop, each
    in its own process as an inference study's trials are. TensorRT needs torch-tensorrt (the
    `tensorrt` extra): without it the knob's own reason is the line, and the check still serves
    fp16."""
    autotune = str(Path(sys.executable).parent / "autotune")
    model = out / "gpu_check_model.pt"
    home = tempfile.mkdtemp(prefix="gpu-check-serve-")
    env = {**os.environ, "AUTOTUNE_HOME": home}

    def cli(*args: str) -> dict[str, Any]:
        proc = subprocess.run([autotune, *args, "--json", "--device", g.device], capture_output=True, text=True,
                              env=env, timeout=600, check=False)
        assert proc.returncode == 0, f"`autotune {' '.join(args)}` exit {proc.returncode}: {proc.stderr.strip()[-400:]}"
        return json.loads(proc.stdout)

    try:
        cli("trial", "run", "--workload", "synthetic-resnet18", "--budget-steps", str(g.steps),
            "--set", f"batch_size={g.batch}", "--save-model", str(model))
        iterations = "5" if g.rehearse else "50"
        served = {"fp32": cli("trial", "serve", "--checkpoint", str(model), "--iterations", iterations)}
        if g.cuda:
            served["fp16"] = cli("trial", "serve", "--checkpoint", str(model), "--iterations", iterations,
                                 "--set", "serve_precision=fp16")
        tensorrt = exclusion_of(g, "tensorrt")
        if tensorrt is None:
            served["tensorrt"] = cli("trial", "serve", "--checkpoint", str(model), "--iterations", iterations,
                                     "--set", "tensorrt=true")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    base = served["fp32"]["latency_p50"]
    parts = []
    for name, r in served.items():
        assert r["status"] == "ok", f"{name}: {r['status']}: {r.get('error')}"
        parts.append(f"{name} {r['latency_p50'] * 1e3:.3f} ms ({base / r['latency_p50']:.2f}x, drop "
                     f"{(r.get('metric_drop') or 0) * 100:+.2f}%, compile {r.get('compile_time') or 0:.1f} s)")
    if tensorrt is not None:
        parts.append(f"tensorrt not run: {tensorrt}")
    return "batch-1 latency p50: " + "; ".join(parts)


def exclusion_of(g: Gpu, knob: str) -> str | None:
    from autotune.knob import exclusion
    from autotune.registry import load_registry

    return exclusion(load_registry(task="inference").knob(knob), g.hardware)


def run_study(g: Gpu, out: Path, name: str, args: list[str], seconds: float) -> dict[str, Any]:
    """`autotune study start --json` in a fresh home on this GPU; its report (also kept in OUT)."""
    home = tempfile.mkdtemp(prefix="gpu-check-home-")
    script = Path(sys.executable).parent / "autotune"
    cmd = [str(script), "study", "start", "--name", name, *args, "--no-tui", "--json", "--device", g.device,
           "--seed", "0", "--timeout", str(int(seconds))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "AUTOTUNE_HOME": home},
                              timeout=seconds + 180, check=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    (out / f"{name}.log").write_text(proc.stderr)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}"
    report = json.loads(proc.stdout)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def study_text(report: dict[str, Any]) -> str:
    """A study's outcome in one line: trials, the answer, its confirmation and its two factors."""
    counts, conf = report["counts"], report.get("confirmation") or {}
    answer = (report.get("answer") or {}).get("settings") or (report.get("best") or {}).get("settings")
    text = f"{report['trials']} trials ({counts}); speedup in search {report.get('speedup_in_search')}; answer {answer}"
    if conf:
        text += (f"; confirmation: median {conf.get('speedup_median')}, interval {conf.get('interval')}, "
                 f"confirmed {conf.get('confirmed')}")
        if conf.get("recipe_check"):
            text += f"; recipe check {conf['recipe_check']}"
    else:
        text += "; no confirmation (the answer is the baseline)"
    if report.get("speedups"):
        text += f"; speedups {report['speedups']}"
    return text


def check_study(g: Gpu, out: Path, seconds: float) -> str:
    space = out / "gpu_check_space.toml"
    # torch.compile has its own check: a cold compile per trial would take the study past its time
    space.write_text(f'extends = "{"cpu" if g.rehearse else "gpu"}"\n\n[knobs.torch_compile]\nsearch = false\n')
    trials, budget, confirm = (3, ["--budget-steps", "6"], "1") if g.rehearse else (20, ["--budget-epochs", "2"], "3")
    workload = "digits" if g.rehearse else "synthetic-resnet18"
    report = run_study(g, out, "gpu_check_study", ["--workload", workload, "--space", str(space), "--n-trials",
                                                   str(trials), *budget, "--confirm", confirm, "--no-explain"], seconds)
    return f"{workload}: {study_text(report)}"


def check_keep_recipe(g: Gpu, out: Path, seconds: float) -> str:
    """--keep-recipe on CUDA: the systems knobs only (precision, TF32, cudnn.benchmark, fused
    optimizers ...), the report's curve check and the confirmed speedup, all same training."""
    trials, budget = (3, "20") if g.rehearse else (10, "150")
    report = run_study(g, out, "gpu_check_keep_recipe", [
        "--workload", "tinylm", "--keep-recipe", "--n-trials", str(trials), "--budget-steps", budget,
        "--confirm", "2" if g.rehearse else "3", "--no-explain"], seconds)
    return f"tinylm --keep-recipe: {study_text(report)}"


class Skip(Exception):
    """A check that does not apply here, with why."""


def run_checks(report: Report, args: Any) -> None:
    g = Gpu(args.rehearse)
    report.data["device"] = f"{g.hardware.device_name} x{g.hardware.device_count} ({g.device})"
    pytest_check(report, args.pytest_xml, args.pytest_rc)
    study_deadline = time.perf_counter() + args.seconds
    steps: list[Callable[[], str]] = [
        lambda: check_fp16(g), lambda: check_bf16(g), lambda: check_cudnn(g), lambda: check_tf32(g),
        lambda: check_fused(g), lambda: check_compile(g), lambda: check_oom_retry(g), lambda: check_peak(g),
        lambda: check_pool(g), lambda: check_serving(g, report.out),
        lambda: check_study(g, report.out, max(60.0, (study_deadline - time.perf_counter() - 90) / 2)),
        lambda: check_keep_recipe(g, report.out, max(60.0, study_deadline - time.perf_counter() - 90)),
    ]
    for (name, needed), step in zip(CHECKS[1:], steps):
        why = missing(report.data["knobs"], needed)
        if why:
            report.add(name, "skip", why)
            continue
        started = time.perf_counter()
        try:
            report.add(name, "pass", step(), time.perf_counter() - started)
        except Skip as skip:
            report.add(name, "skip", str(skip), time.perf_counter() - started)
        except Exception as exc:  # one failing check must not hide the others
            line = f"{type(exc).__name__}: {exc}".splitlines()[0][:600]
            report.add(name, "fail", line, time.perf_counter() - started)


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--dry", action="store_true", help="run nothing, import no torch: say what is skipped")
    p.add_argument("--reason", default="no CUDA", help="why it is dry (printed on each skipped line)")
    p.add_argument("--rehearse", action="store_true", help="every check on this CPU at toy size")
    p.add_argument("--pytest-xml", type=Path, default=None, help="JUnit XML of the -m gpu tests")
    p.add_argument("--pytest-rc", type=int, default=None, help="their pytest exit status")
    p.add_argument("--seconds", type=float, default=330.0,
                   help="the in-process checks and the study end within about this long (default 330)")
    args = p.parse_args()
    out = common.results_dir(args.out)
    mode = "dry" if args.dry else "rehearse" if args.rehearse else "full"
    report = Report(out, mode, args.reason if args.dry else None, listed_knobs())
    if args.dry:
        dry(report, args.reason)
    else:
        common.scratch_home()
        run_checks(report, args)
    report.write(complete=True)
    print(f"gpu_check: wrote {out / 'gpu_check.json'} and gpu_check.md ({mode})", flush=True)
    return 1 if report.data["summary"]["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
