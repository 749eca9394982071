"""The primary metric of a workload: its name, which way is better, and targets in its units.

Torch-free: the CLI parses `--target val_loss<=1.9` and the terminal UI shows the metric's name
and direction without importing torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from autotune.errors import UsageError

MAXIMIZE, MINIMIZE = "maximize", "minimize"
DIRECTION_WORDS = {
    "max": MAXIMIZE, "maximize": MAXIMIZE, "higher": MAXIMIZE,
    "min": MINIMIZE, "minimize": MINIMIZE, "lower": MINIMIZE,
}
# Metric names that are better when lower, by the words they are made of (val_loss, perplexity,
# mse, char_error_rate ...); every other name is taken as higher-is-better, like accuracy.
LOWER_WORDS = ("loss", "perplexity", "ppl", "error", "err", "mse", "mae", "rmse", "wer", "cer", "bpc", "nll")
DEFAULT_METRIC = "accuracy"
# What a user's own script (the session API) is judged by unless --metric names another.
SCRIPT_METRIC = "val_loss"
# A target derived from the baseline gives it this much slack, so the baseline itself reaches
# it and a trial is not asked to beat it, only to match it: 0.5 points for a fraction such as
# accuracy, 1% of the value for anything else; for a fraction measured on a known number of
# validation samples, at least NOISE_SIGMAS standard errors of it (on 360 images at 98%, one
# image is 0.28 points and the standard error 0.74: a 0.5-point target sits inside the noise,
# and the untouched baseline misses it on another seed).
FRACTION_SLACK = 0.005
RELATIVE_SLACK = 0.01
NOISE_SIGMAS = 2.0


def infer_direction(name: str) -> str:
    words = re.split(r"[^a-z0-9]+", name.lower())
    return MINIMIZE if any(word in LOWER_WORDS for word in words) else MAXIMIZE


@dataclass(frozen=True)
class Metric:
    """The metric a study judges a run by (the workload's primary metric)."""

    name: str = DEFAULT_METRIC
    direction: str = MAXIMIZE

    def __post_init__(self) -> None:
        if self.direction not in (MAXIMIZE, MINIMIZE):
            raise UsageError(f"metric '{self.name}': direction must be maximize or minimize, got {self.direction!r}")
        if not self.name or not isinstance(self.name, str):
            raise UsageError(f"a metric needs a name, got {self.name!r}")

    @classmethod
    def named(cls, name: str, direction: str | None = None) -> "Metric":
        """A metric by name; its direction, when not given, from its name (loss: lower)."""
        return cls(name, DIRECTION_WORDS.get(direction or "", direction) or infer_direction(name))  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str) -> "Metric":
        """`val_loss`, `val_loss:min`, `score:higher`: the --metric option."""
        name, _, word = text.strip().partition(":")
        if word and word.lower() not in DIRECTION_WORDS:
            raise UsageError(f"--metric {text!r}: the direction after ':' is min or max (lower, higher)")
        return cls.named(name.strip(), DIRECTION_WORDS.get(word.lower()) if word else None)

    @property
    def higher_is_better(self) -> bool:
        return self.direction == MAXIMIZE

    @property
    def operator(self) -> str:
        return ">=" if self.higher_is_better else "<="

    def bound(self, target: float) -> str:
        """A target in this metric, as every message writes it: `val_loss<=2.251`."""
        return f"{self.name}{self.operator}{target:.4g}"

    def describe(self) -> str:
        return f"{self.name} ({'higher' if self.higher_is_better else 'lower'} is better)"

    def reached(self, value: float | None, target: float | None) -> bool:
        if value is None or target is None or not math.isfinite(value):
            return False
        return value >= target if self.higher_is_better else value <= target

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is strictly better than `b`."""
        return a > b if self.higher_is_better else a < b

    def target_from(self, baseline: float, samples: int | None = None) -> float:
        """The target a study sets from the baseline's final value (see FRACTION_SLACK), measured
        on `samples` validation samples when known."""
        sign = -1.0 if self.higher_is_better else 1.0
        if self.name == DEFAULT_METRIC or (self.higher_is_better and 0.0 <= baseline <= 1.0):
            slack = FRACTION_SLACK
            if samples:
                p = min(max(baseline, 0.0), 1.0)
                slack = max(slack, NOISE_SIGMAS * math.sqrt(p * (1.0 - p) / samples))
            return round(max(0.0, baseline + sign * slack), 4)
        return float(f"{baseline + sign * RELATIVE_SLACK * abs(baseline):.4g}")

    def drop(self, reference: float, value: float) -> float:
        """How much worse `value` is than `reference`, relative to it: positive on the worse
        side of the direction (0.02: 2% worse), negative when better. An inference study's
        accuracy guard reads it against --max-drop."""
        change = (reference - value) if self.higher_is_better else (value - reference)
        return change / abs(reference) if reference else (0.0 if change == 0 else math.copysign(math.inf, change))

    def guard(self, reference: float, max_drop: float) -> float:
        """The worst value within `max_drop` (relative) of `reference`: the bound a served
        model's metric must reach (INC's default accuracy criterion is 1% relative)."""
        slack = abs(reference) * max_drop
        return reference - slack if self.higher_is_better else reference + slack

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "direction": self.direction}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Metric":
        if not data:
            return cls()
        return cls(str(data.get("name", DEFAULT_METRIC)), str(data.get("direction", MAXIMIZE)))


@dataclass(frozen=True)
class Target:
    """A --target: a value of a metric (None: the workload's primary metric)."""

    value: float
    metric: str | None = None
    direction: str | None = None  # from the operator, when one was given

    @classmethod
    def parse(cls, text: str | float) -> "Target":
        """`0.95` (the primary metric), `val_loss<=1.9`, `accuracy>=0.97`."""
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return cls(_finite(float(text), str(text)))
        raw = str(text).strip()
        match = re.fullmatch(r"([A-Za-z_][\w.\-]*)\s*(<=|>=)\s*(.+)", raw)
        if match is None:
            try:
                return cls(_finite(float(raw), raw))
            except ValueError:
                raise UsageError(
                    f"--target {raw!r}: give a number (the workload's metric) or NAME<=VALUE / NAME>=VALUE, "
                    f"e.g. val_loss<=1.9"
                ) from None
        name, op, number = match.groups()
        try:
            value = float(number)
        except ValueError:
            raise UsageError(f"--target {raw!r}: {number!r} is not a number") from None
        return cls(_finite(value, raw), name, MINIMIZE if op == "<=" else MAXIMIZE)

    def metric_for(self, primary: Metric) -> Metric:
        """The metric this target is in: the primary one unless it names another."""
        if self.metric is None or self.metric == primary.name:
            if self.direction is not None and self.direction != primary.direction:
                raise UsageError(
                    f"--target {self.text()}: {primary.describe()}, so its target is "
                    f"{primary.name}{primary.operator}VALUE"
                )
            return primary
        return Metric(self.metric, self.direction or infer_direction(self.metric))

    def text(self) -> str:
        """The target as it was given: `0.9`, `val_loss<=1.9`."""
        if self.metric is None:
            return f"{self.value:g}"
        return f"{self.metric}{'<=' if self.direction == MINIMIZE else '>='}{self.value:g}"


def _finite(value: float, raw: str) -> float:
    if not math.isfinite(value):
        raise UsageError(f"--target {raw!r}: must be a finite number")
    return value


def study_metric(workload_metric: Metric, target: Target | None, override: Metric | None = None) -> Metric:
    """The metric a study judges by: --metric, else the one a --target names, else the workload's."""
    if override is not None:
        if target is not None and target.metric not in (None, override.name):
            raise UsageError(f"--target names {target.metric} but --metric is {override.name}")
        return override
    if target is not None:
        return target.metric_for(workload_metric)
    return workload_metric


def metric_value(measured: dict[str, Any], name: str) -> float | None:
    """A trial's value of the study's metric from what it recorded (its TRIAL_METRICS user attrs);
    trials recorded before metrics had names carry only val_accuracy."""
    value = measured.get("metric_value")
    if value is None:
        value = (measured.get("metrics") or {}).get(name)
    if value is None and name == DEFAULT_METRIC:
        value = measured.get("val_accuracy")
    return value
