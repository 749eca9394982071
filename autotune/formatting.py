"""How numbers, units and settings are written for people: one module for the CLI and the UI.

One rule of digits for everything measured: three significant digits, thousands grouped from
1,000 up (5,120 samples/s, 35.3 samples/s, 143 MiB), durations as 3.2s / 4m05s / 2h03m, step
times in ms, fractions of time as percentages (data wait 5.4%), ratios as 1.23x. Validation
metrics keep four significant digits (an accuracy of 0.9805 against a target of 0.966 must show
its third decimal). A setting keeps the digits that tell it from its neighbours (beta2 0.999 is
never "1"). Nothing here returns a Python repr: dicts and lists are written as `k=v` and `a, b`.

`METRIC_UNITS` says how each measured quantity is shown; `metric(name, value)` applies it.
Torch-free and Textual-free (the terminal UI adds only colours, in autotune.tui.format).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

DIGITS = 3  # significant digits of a measured quantity


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def significant(value: float, digits: int = DIGITS) -> str:
    """3 significant digits, thousands grouped and no decimals from 1,000 up: 0.0123, 3.21,
    35.3, 183, 5,120, 1,433,000; never an exponent below 1e15. inf and nan as words."""
    if not math.isfinite(value):
        return "inf" if value > 0 else "-inf" if value < 0 else "nan"
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1) or abs(value) >= 1000:
        return f"{value:,.0f}"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    text = f"{value:.{max(decimals, 0)}f}"
    if abs(float(text)) >= 10 ** (digits - 1):  # 99.96 rounds up to 100.0
        return f"{float(text):,.0f}"
    return text


def number(value: Any, digits: int = 4) -> str:
    """A value on a screen: 0.9812, 1,797 (counts grouped), 25,120, true, a list as `a, b`."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return significant(value, digits)
    return plain(value, digits)


def plain(value: Any, digits: int = 4) -> str:
    """A value in a report line or a table cell: floats to `digits` significant digits, lists
    joined, dicts as `k=v`, never a Python repr."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v, digits) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v, digits)}" for k, v in value.items())
    return str(value)


def count(value: int | float | None) -> str:
    """1,797: a count of things (trials, steps, samples)."""
    if value is None or not _finite(value):
        return "-"
    return f"{round(value):,}"


def seconds(value: float | None) -> str:
    """0.41s, 3.2s, 4m05s, 2h03m: a duration."""
    if value is None or not _finite(value):
        return "-"
    if value < 1:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(round(value)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def milliseconds(value: float | None) -> str:
    """12.3 ms: a step time, given in seconds."""
    if value is None or not _finite(value):
        return "-"
    return f"{significant(value * 1000)} ms"


def rate(value: float | None, unit: str = "samples") -> str:
    """5,120 samples/s, 35.3 tokens/s: a throughput."""
    if value is None or not _finite(value):
        return "-"
    return f"{significant(value)} {unit}/s"


def percent(fraction: float | None) -> str:
    """5.4%, 0.05%, 42%, 100%: a fraction (0..1) as a percentage, 2-3 significant digits."""
    if fraction is None or not _finite(fraction):
        return "-"
    value = fraction * 100
    if value == 0:
        return "0%"
    if abs(value) >= 10:
        return f"{value:.0f}%"
    if abs(value) >= 1:
        return f"{value:.1f}%"
    return f"{significant(value, 2)}%"


def nbytes(value: float | None) -> str:
    """512 B, 12.3 KiB, 143 MiB, 7.90 GiB: a size in bytes."""
    if value is None or not _finite(value):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} B" if unit == "B" else f"{significant(value)} {unit}"
        value /= 1024
    return "-"  # pragma: no cover


def drop(fraction: float | None) -> str:
    """-0.20%, 0%, 1.3%: how much worse a metric is than a reference, relative (a negative drop
    is an improvement); two decimals below 1%, where an accuracy guard's limit usually lies."""
    if fraction is None or not _finite(fraction):
        return "-"
    value = fraction * 100
    if value == 0:
        return "0%"
    if abs(value) >= 10:
        return f"{value:.0f}%"
    if abs(value) >= 1:
        return f"{value:.1f}%"
    return f"{value:.2f}%"


def ratio(value: float | None) -> str:
    """2.10x: a speedup or any ratio."""
    return "-" if value is None or not _finite(value) else f"{value:.2f}x"


def ratio_range(low: float | None, high: float | None) -> str:
    """1.80-2.40x: an interval of ratios."""
    if low is None or high is None:
        return "-"
    return f"{low:.2f}-{high:.2f}x"


def setting(value: Any) -> str:
    """A setting's value as a person would type it: 128, adamw, true, 0.003, 0.999 (never "1"),
    3e-05; floats to 3 significant digits unless that would round them to another round value."""
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, float):
        return plain(value)
    if not math.isfinite(value):
        return str(value)
    for digits in range(3, 8):
        text = f"{value:.{digits}g}"
        # 0.9999 at 3 digits is "1": a different setting; keep digits until it is not
        if float(text) == value or not float(text).is_integer() or value.is_integer():
            return text
    return repr(value)


def settings_text(settings: dict[str, Any], keys: Iterable[str] | None = None) -> str:
    """batch_size=128 optimizer=adamw learning_rate=0.003: floats to 3 significant digits."""
    items = settings.items() if keys is None else ((k, settings[k]) for k in keys if k in settings)
    return " ".join(f"{k}={setting(v)}" for k, v in items)


def validation(value: float | None) -> str:
    """0.9805, 2.229: a validation metric, four significant digits."""
    if value is None or not _finite(value):
        return "-" if value is None else str(value)
    return f"{value:.4g}"


def load(value: float | None) -> str:
    """3.1: a load average."""
    return "-" if value is None or not _finite(value) else f"{value:.1f}"


def _rate_of(unit: str) -> Callable[[Any], str]:
    return lambda value: rate(value, unit)


# How each measured quantity of a trial (autotune.statuses.TRIAL_METRICS, the rates and the
# live trial's figures) is shown; a name not here is a validation metric (validation()).
METRIC_UNITS: dict[str, Callable[[Any], str]] = {
    "throughput": _rate_of("samples"), "samples_per_s": _rate_of("samples"),
    "tokens_per_s": _rate_of("tokens"),
    "step_time": milliseconds, "step_time_p50": milliseconds, "step_time_p95": milliseconds,
    "data_wait_fraction": percent, "nonzero_fraction": percent, "fraction": percent, "steal": percent,
    "peak_memory_bytes": nbytes, "gpu_memory_bytes": nbytes, "memory_bytes": nbytes,
    "wall_time": seconds, "train_time": seconds, "val_time": seconds, "time_to_target": seconds,
    "projected_time_to_target": seconds, "setup_time": seconds, "setup": seconds, "warmup": seconds,
    "duration": seconds,
    "steps": count, "epochs": lambda v: "-" if v is None else f"{v:.3g}", "val_samples": count,
    "samples": count, "step": count, "total_steps": count,
    "load_avg": load,
    "latency_p50": milliseconds, "latency_p95": milliseconds, "model_bytes": nbytes, "compile_time": seconds,
    "metric_drop": drop, "paired_speedup": ratio,
}
# What each quantity is called on screen, where its name is not plain enough.
METRIC_LABELS = {
    "throughput": "throughput", "samples_per_s": "throughput", "tokens_per_s": "throughput (tokens)",
    "step_time": "steady step", "step_time_p50": "step p50", "step_time_p95": "step p95",
    "data_wait_fraction": "data wait", "nonzero_fraction": "weights kept", "peak_memory_bytes": "peak memory",
    "wall_time": "wall time", "train_time": "training time", "val_time": "validation time",
    "time_to_target": "trained to target", "projected_time_to_target": "projected to target",
    "setup_time": "set-up", "setup": "set-up", "val_samples": "validation samples", "metric_value": "metric",
    "load_avg": "load average", "steal": "CPU steal",
    "latency_p50": "latency p50", "latency_p95": "latency p95", "model_bytes": "model size",
    "compile_time": "compile time", "metric_drop": "metric drop", "paired_speedup": "vs unoptimized",
}


def metric(name: str, value: Any) -> str:
    """A measured quantity by its name, in its unit: metric("data_wait_fraction", 0.0536) is
    "5.4%", metric("throughput", 5120.4) "5,120 samples/s", metric("val_loss", 2.2291) "2.229"."""
    if value is None:
        return "-"
    if isinstance(value, dict):  # one_time {"setup": .., "warmup": ..}, machine {"load_avg": ..}
        return ", ".join(f"{METRIC_LABELS.get(k, k)} {metric(k, v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(metric(name, v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return plain(value)
    show = METRIC_UNITS.get(name)
    return show(value) if show else validation(float(value))


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def values_text(values: Iterable[float] | None) -> str:
    """An objective's value(s): 12.31, or 0.9812, 5120, 1.433e+08."""
    values = list(values or ())
    return ", ".join(plain(v) for v in values) if values else "-"


def counts_text(counts: dict[str, Any]) -> str:
    """3 complete, 1 pruned, 0 failed: a study's trial counts."""
    return ", ".join(f"{count(v)} {k}" for k, v in counts.items())


def noise_text(noise: dict[str, Any] | None) -> str | None:
    """"noise ±4% (the baseline's re-runs)" or, on a noisy machine, "noise ±12%: hides differences
    below 1.12x"; None when the study measured none."""
    if not noise or noise.get("margin") is None:
        return None
    margin = noise["margin"]
    text = f"noise ±{percent(margin)}"
    if noise.get("noisy"):
        busy = f", other processes kept {noise['others']:.1f} cores busy" if noise.get("busy") else ""
        short = ", runs too short to time better" if noise.get("cause") == "run" else ""
        return f"{text}: hides differences below {ratio(1 + margin)}{busy}{short}"
    how = {"re-runs": "the baseline's re-runs", "steps": "the baseline's steps"}.get(noise.get("source") or "")
    return f"{text} ({how})" if how else text


def confirmation_text(confirmation: dict[str, Any] | None) -> str | None:
    """"confirmed 2.10x: 75% interval 1.80-2.40x over 3 of 3 paired re-runs", "1.20x not
    confirmed: ...", "not confirmed: 0 of 3 paired re-runs gave a ratio"; None without re-runs."""
    from autotune.intervals import MIN_COVERAGE

    conf = confirmation or {}
    if not conf.get("repeats"):
        return None
    pairs = f"{conf.get('valid_pairs', 0)} of {conf['repeats']} paired re-runs"
    median = conf.get("speedup_median")
    if median is None:
        return f"not confirmed: {pairs} gave a ratio"
    interval, coverage = conf.get("interval"), conf.get("coverage")
    if interval and coverage is not None and coverage < MIN_COVERAGE:
        spread = "too few to bound it"
    elif interval and coverage is not None:
        spread = f"{percent(coverage)} interval {ratio_range(*interval)}"
    else:
        spread = f"min-max {ratio_range(conf.get('speedup_min'), conf.get('speedup_max'))}"
    verdict = f"confirmed {ratio(median)}" if conf.get("confirmed", True) else f"{ratio(median)} not confirmed"
    return f"{verdict}: {spread} over {pairs}"


def why_faster_text(path: dict[str, Any] | None) -> list[str]:
    """One line per step of the path from the baseline to the best (autotune.study.ablation):
    `learning_rate 0.0003 -> 0.003: 3.10x`."""
    lines = []
    for step in (path or {}).get("steps", []):
        change = ", ".join(f"{k} {setting(step['from'].get(k))} -> {setting(v)}" for k, v in step["to"].items())
        shown = ratio(step["ratio"]) if step.get("ratio") else f"no time ({step.get('status')})"
        if step.get("ratio") and step.get("bound"):  # a step next to a run that missed the target
            shown = f"{step['bound']} {shown}"
        elif step.get("missed") and not step.get("ratio"):
            shown = "no time (missed the target)"
        lines.append(f"{change}: {shown}")
    return lines


def speedup_factors_text(speedups: dict[str, Any] | None, systems: bool = True) -> str | None:
    """"same training 1.21x (precision bf16) x recipe 3.22x": a study's speedup as its two factors
    (autotune.storage.speedups.speedup_factors), the systems settings that differ from the baseline's
    after the first unless `systems` is False; None when the same-training factor was not measured."""
    s = speedups or {}
    if not _finite(s.get("same_training")):
        return None
    text = f"same training {ratio(s['same_training'])}"
    changed = s.get("systems")
    if systems and isinstance(changed, dict):
        text += f" ({', '.join(f'{k} {setting(v)}' for k, v in changed.items()) or 'no systems knob changed'})"
    return text + (f" x recipe {ratio(s['recipe'])}" if _finite(s.get("recipe")) else "")


def speedups_text(speedups: dict[str, Any] | None, systems: bool = True) -> str | None:
    """"speedup 3.90x = same training 1.21x (precision bf16) x recipe 3.22x": the total and the two
    factors it multiplies out of; None when the same-training factor was not measured."""
    factors = speedup_factors_text(speedups, systems)
    if factors is None:
        return None
    total = (speedups or {}).get("total")
    return f"speedup {ratio(total)} = {factors}" if _finite(total) else factors


def same_training_how(speedups: dict[str, Any] | None) -> str | None:
    """"same training measured by paired step time, interval 1.15-1.27x": how the same-training
    factor was measured; None when nothing says it."""
    s = speedups or {}
    if not _finite(s.get("same_training")):
        return None
    interval = s.get("same_training_interval")
    parts = [f"measured by {s['how']}"] if s.get("how") else []
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        parts.append(f"interval {ratio_range(*interval)}")
    return "same training " + ", ".join(parts) if parts else None
