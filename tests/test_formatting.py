"""autotune.formatting: every unit the terminal UI and the CLI show, over representative values.

The tables below are the contract: a quantity added to METRIC_UNITS without a row here fails
`test_every_metric_unit_is_covered`."""

from __future__ import annotations

import math
import re

import pytest

from autotune import formatting as f
from autotune.statuses import TRIAL_METRICS

MIB, GIB = 2**20, 2**30

# (name, value, shown): each of METRIC_UNITS, and validation metrics by name
METRICS = [
    ("throughput", 5120.4, "5,120 samples/s"), ("throughput", 35.309, "35.3 samples/s"),
    ("samples_per_s", 183.0, "183 samples/s"), ("tokens_per_s", 144.23, "144 tokens/s"),
    ("step_time", 0.01234, "12.3 ms"), ("step_time_p50", 0.0695, "69.5 ms"), ("step_time_p95", 0.25, "250 ms"),
    ("data_wait_fraction", 0.05357, "5.4%"), ("nonzero_fraction", 0.92, "92%"), ("fraction", 0.6, "60%"),
    ("steal", 0.0004, "0.040%"),
    ("peak_memory_bytes", 143 * MIB, "143 MiB"), ("gpu_memory_bytes", 80 * GIB, "80.0 GiB"),
    ("memory_bytes", 7.9 * GIB, "7.90 GiB"),
    ("wall_time", 245.0, "4m05s"), ("train_time", 3.21, "3.2s"), ("val_time", 0.41, "0.41s"),
    ("time_to_target", 7390.0, "2h03m"), ("projected_time_to_target", 12.31, "12.3s"), ("setup_time", 1.2, "1.2s"),
    ("setup", 0.3, "0.30s"), ("warmup", 2.0, "2.0s"), ("duration", 59.96, "60.0s"),
    ("steps", 1797, "1,797"), ("epochs", 2.0, "2"), ("epochs", 0.333333, "0.333"), ("val_samples", 360, "360"),
    ("samples", 25120, "25,120"), ("step", 84, "84"), ("total_steps", 140, "140"),
    ("load_avg", 3.14159, "3.1"),
    ("val_accuracy", 0.98051, "0.9805"), ("val_loss", 2.22912, "2.229"), ("metric_value", 0.9, "0.9"),
    ("accuracy", 1.0, "1"),
    # serving a trained model (inference studies)
    ("latency_p50", 0.000312, "0.312 ms"), ("latency_p95", 0.0123, "12.3 ms"), ("model_bytes", 246 * 1024, "246 KiB"),
    ("compile_time", 21.43, "21.4s"), ("metric_drop", 0.0123, "1.2%"), ("metric_drop", -0.002, "-0.20%"),
    ("metric_drop", 0.0, "0%"), ("paired_speedup", 1.234, "1.23x"),
]


@pytest.mark.parametrize("name, value, shown", METRICS)
def test_metric_in_its_unit(name: str, value: float, shown: str) -> None:
    assert f.metric(name, value) == shown


def test_every_metric_unit_is_covered() -> None:
    assert set(f.METRIC_UNITS) <= {name for name, _, _ in METRICS}
    # and every scalar a trial records has a unit or is a validation metric by design
    validation = {"val_loss", "val_accuracy", "metric_value"}
    scalars = set(TRIAL_METRICS) - {"metrics", "notes", "rates", "one_time", "machine"}
    assert scalars - set(f.METRIC_UNITS) == validation


def test_dicts_and_lists_are_never_shown_as_python() -> None:
    assert f.metric("one_time", {"setup": 1.2, "warmup": 0.3}) == "set-up 1.2s, warmup 0.30s"
    assert f.metric("machine", {"load_avg": 6.2, "steal": 0.01}) == "load average 6.2, CPU steal 1.0%"
    assert f.plain({"complete": 1, "pruned": 2}) == "complete=1, pruned=2"
    assert f.plain([0.98123, 5120.0]) == "0.9812, 5120"
    assert f.number({"a": [1, 2]}) == "a=1, 2"
    assert f.counts_text({"complete": 1, "pruned": 2, "failed": 0}) == "1 complete, 2 pruned, 0 failed"
    for shown in (f.metric("one_time", {"setup": 1.0}), f.plain({"x": {"y": 1}}), f.plain([["a"]])):
        assert not re.search(r"[{\[]['\"]|'\w+': ", shown), shown


@pytest.mark.parametrize("value, shown", [
    (0.0, "0"), (0.0123, "0.0123"), (3.214, "3.21"), (35.309, "35.3"), (144.23, "144"), (183.0, "183"),
    (99.96, "100"), (999.6, "1,000"), (5120.4, "5,120"), (1_433_000.0, "1,433,000"), (-2.5, "-2.50"),
    (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan"),
])
def test_three_significant_digits(value: float, shown: str) -> None:
    assert f.significant(value) == shown


@pytest.mark.parametrize("value, shown", [
    (0.999, "0.999"), (0.9999, "0.9999"), (0.9, "0.9"), (3e-05, "3e-05"), (0.0031622776, "0.00316"),
    (0.1, "0.1"), (2.0, "2"), (128, "128"), (True, "true"), (False, "false"), ("adamw", "adamw"),
    (None, "-"),
])
def test_settings_keep_the_digits_that_tell_them_apart(value: object, shown: str) -> None:
    assert f.setting(value) == shown


def test_settings_text() -> None:
    assert f.settings_text({"batch_size": 128, "beta2": 0.9999, "channels_last": True, "lr": 0.0031622}) == (
        "batch_size=128 beta2=0.9999 channels_last=true lr=0.00316")
    assert f.settings_text({"a": 1, "b": 2, "c": 3}, keys=["c", "a", "missing"]) == "c=3 a=1"


@pytest.mark.parametrize("fraction, shown", [
    (0.0, "0%"), (0.0005, "0.050%"), (0.05357, "5.4%"), (0.1, "10%"), (0.75, "75%"), (1.0, "100%"),
    (None, "-"), (math.nan, "-"),
])
def test_percent(fraction: float | None, shown: str) -> None:
    assert f.percent(fraction) == shown


@pytest.mark.parametrize("value, shown", [
    (512, "512 B"), (12.3 * 1024, "12.3 KiB"), (143 * MIB, "143 MiB"), (1.5 * GIB, "1.50 GiB"),
    (3 * 2**40, "3.00 TiB"), (None, "-"),
])
def test_nbytes(value: float | None, shown: str) -> None:
    assert f.nbytes(value) == shown


def test_durations_rates_ratios_counts() -> None:
    assert [f.seconds(v) for v in (None, 0.41, 3.21, 59.9, 245, 3599.6, 7390)] == [
        "-", "0.41s", "3.2s", "59.9s", "4m05s", "1h00m", "2h03m"]
    assert f.milliseconds(0.0004) == "0.400 ms" and f.milliseconds(None) == "-"
    assert f.rate(3120.0) == "3,120 samples/s" and f.rate(35.3, "tokens") == "35.3 tokens/s" and f.rate(None) == "-"
    assert f.ratio(2.1) == "2.10x" and f.ratio(None) == "-" and f.ratio(math.inf) == "-"
    assert f.ratio_range(1.8, 2.4) == "1.80-2.40x" and f.ratio_range(None, 2.0) == "-"
    assert f.count(1797) == "1,797" and f.count(None) == "-"
    assert f.validation(0.98051) == "0.9805" and f.validation(None) == "-"
    assert f.load(6.24) == "6.2"
    assert f.number(1797) == "1,797" and f.number(0.98123) == "0.9812" and f.number(True) == "true"


def test_noise_confirmation_and_why_faster() -> None:
    assert f.noise_text(None) is None
    assert f.noise_text({"margin": 0.04, "source": "re-runs"}) == "noise ±4.0% (the baseline's re-runs)"
    assert f.noise_text({"margin": 0.12, "noisy": True}) == "noise ±12%: hides differences below 1.12x"
    assert f.noise_text({"margin": 0.31, "noisy": True, "cause": "run"}) == (
        "noise ±31%: hides differences below 1.31x, runs too short to time better")
    assert f.noise_text({"margin": 0.12, "noisy": True, "busy": True, "others": 1.04}) == (
        "noise ±12%: hides differences below 1.12x, other processes kept 1.0 cores busy")
    confirmed = {"speedup_median": 2.1, "speedup_min": 1.8, "speedup_max": 2.4, "interval": [1.8, 2.4],
                 "coverage": 0.75, "confirmed": True, "valid_pairs": 3, "repeats": 3}
    assert f.confirmation_text(confirmed) == "confirmed 2.10x: 75% interval 1.80-2.40x over 3 of 3 paired re-runs"
    assert f.confirmation_text({**confirmed, "confirmed": False, "interval": [0.8, 2.4]}) == (
        "2.10x not confirmed: 75% interval 0.80-2.40x over 3 of 3 paired re-runs")
    assert f.confirmation_text({**confirmed, "coverage": 0.5, "valid_pairs": 1}) == (
        "confirmed 2.10x: too few to bound it over 1 of 3 paired re-runs")
    assert f.confirmation_text({"repeats": 3, "valid_pairs": 0}) == "not confirmed: 0 of 3 paired re-runs gave a ratio"
    assert f.confirmation_text({}) is None and f.confirmation_text(None) is None
    path = {"steps": [
        {"from": {"learning_rate": 0.0003}, "to": {"learning_rate": 0.003}, "ratio": 3.1},
        {"from": {"beta2": 0.9999, "batch_size": 64}, "to": {"beta2": 0.999, "batch_size": 256}, "ratio": None,
         "status": "oom"},
    ]}
    assert f.why_faster_text(path) == [
        "learning_rate 0.0003 -> 0.003: 3.10x",
        "beta2 0.9999 -> 0.999, batch_size 64 -> 256: no time (oom)",
    ]
    assert f.why_faster_text(None) == []
    bounded = {"steps": [
        {"from": {"batch_size": 64}, "to": {"batch_size": 26}, "ratio": 0.8, "bound": "at most", "missed": True},
        {"from": {"learning_rate": 0.0003}, "to": {"learning_rate": 0.003}, "ratio": 9.75, "bound": "at least"},
        {"from": {"beta2": 0.999}, "to": {"beta2": 0.99}, "ratio": None, "missed": True, "status": "ok"},
    ]}
    assert f.why_faster_text(bounded) == [
        "batch_size 64 -> 26: at most 0.80x",
        "learning_rate 0.0003 -> 0.003: at least 9.75x",
        "beta2 0.999 -> 0.99: no time (missed the target)",
    ]


SPEEDUPS = {"total": 3.9, "same_training": 1.21, "same_training_interval": [1.15, 1.27], "recipe": 3.22,
            "systems": {"precision": "bf16", "workers": 0}, "how": "paired step time"}


def test_a_speedup_is_shown_as_same_training_times_recipe() -> None:
    assert f.speedups_text(SPEEDUPS) == (
        "speedup 3.90x = same training 1.21x (precision bf16, workers 0) x recipe 3.22x")
    assert f.speedup_factors_text(SPEEDUPS, systems=False) == "same training 1.21x x recipe 3.22x"
    assert f.same_training_how(SPEEDUPS) == "same training measured by paired step time, interval 1.15-1.27x"
    # --keep-recipe: the whole speedup is the same training's
    kept = {**SPEEDUPS, "total": 1.5, "same_training": 1.5, "recipe": 1.0, "systems": {"channels_last": True}}
    assert f.speedups_text(kept) == "speedup 1.50x = same training 1.50x (channels_last true) x recipe 1.00x"
    assert f.speedups_text({**SPEEDUPS, "systems": {}}) == (
        "speedup 3.90x = same training 1.21x (no systems knob changed) x recipe 3.22x")
    assert f.speedups_text({**SPEEDUPS, "total": None, "recipe": None}) == (
        "same training 1.21x (precision bf16, workers 0)")
    assert f.same_training_how({**SPEEDUPS, "how": None, "same_training_interval": None}) is None


@pytest.mark.parametrize("stored", [None, {}, {"total": 3.9}, {**SPEEDUPS, "same_training": None}])
def test_a_speedup_not_split_shows_nothing_new(stored: dict | None) -> None:
    assert f.speedups_text(stored) is None and f.speedup_factors_text(stored) is None
    assert f.same_training_how(stored) is None
