"""Metrics and targets (autotune.metrics): which way is better, how a target parses and agrees with
the metric, and the slack a target taken from the baseline gets.
"""

from __future__ import annotations

import pytest

from autotune.errors import UsageError
from autotune.metrics import MAXIMIZE, MINIMIZE, Metric, Target, study_metric


@pytest.mark.parametrize("name, direction", [
    ("accuracy", MAXIMIZE), ("val_loss", MINIMIZE), ("perplexity", MINIMIZE), ("val_mse", MINIMIZE),
    ("char_error_rate", MINIMIZE), ("bleu", MAXIMIZE), ("f1", MAXIMIZE),
])
def test_direction_is_inferred_from_the_name(name: str, direction: str) -> None:
    assert Metric.named(name).direction == direction


def test_targets_parse_and_must_agree_with_the_metric() -> None:
    assert Target.parse("0.9") == Target(0.9)
    assert Target.parse("val_loss<=1.9") == Target(1.9, "val_loss", MINIMIZE)
    loss = Metric.named("val_loss")
    assert Target.parse("1.9").metric_for(loss) == loss
    with pytest.raises(UsageError, match="val_loss<=VALUE"):
        Target.parse("val_loss>=1.9").metric_for(loss)
    for bad in ("fast", "val_loss<=x", "nan", "inf"):
        with pytest.raises(UsageError, match="--target"):
            Target.parse(bad)
    # a target naming another metric judges by that one; --metric must agree with it
    assert study_metric(Metric(), Target.parse("val_loss<=2")) == Metric("val_loss", MINIMIZE)
    with pytest.raises(UsageError, match="--metric"):
        study_metric(Metric(), Target.parse("val_loss<=2"), Metric.parse("val_mae"))


def test_a_target_from_the_baseline_gives_it_slack_the_right_way() -> None:
    assert Metric().target_from(0.9123) == pytest.approx(0.9073)
    # measured on 360 images, 98% has a standard error of 0.74 points: the slack is two of them
    assert Metric().target_from(0.98, samples=360) == pytest.approx(0.98 - 2 * (0.98 * 0.02 / 360) ** 0.5, abs=1e-4)
    assert Metric().target_from(0.98, samples=10**6) == pytest.approx(0.975)  # never under 0.5 points
    assert Metric.named("val_loss").target_from(2.0) == pytest.approx(2.02)
    assert Metric.named("score", "max").target_from(40.0) == pytest.approx(39.6)
    assert Metric.named("val_loss").reached(2.01, 2.02) and not Metric.named("val_loss").reached(2.03, 2.02)
    assert not Metric().reached(float("nan"), 0.5)
