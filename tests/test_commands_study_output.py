"""The report `study start` prints when the study ends, for the outcomes a study can have."""

from __future__ import annotations

from typing import Any

import pytest

from autotune.commands.study_output import print_report


def report(pairs: list[tuple[float | None, float | None]], speedups: tuple[float, ...] = ()) -> dict[str, Any]:
    """A study's report as StudyRunner.run returns it, with one re-run (baseline, best) per pair."""
    side = {"number": 0, "value": 0.98, "settings": {"batch_size": 64},
            "metrics": {"time_to_target": 0.98, "throughput": 7000.0, "val_accuracy": 0.98}}
    confirmation = {
        "runs": [{"seed": 1000 + i, "baseline": {"value": b}, "best": {"value": t}} for i, (b, t) in enumerate(pairs)],
        "repeats": len(pairs), "valid_pairs": len(speedups),
        "speedup_median": sorted(speedups)[len(speedups) // 2] if speedups else None,
        "speedup_min": min(speedups, default=None), "speedup_max": max(speedups, default=None),
    }
    return {
        "study": "demo", "workload": "digits", "device": "cpu", "objective": "time-to-accuracy",
        "budget": "5 epochs", "target": 0.9755, "counts": {"complete": 4, "pruned": 8, "failed": 0},
        "best": {**side, "number": 10, "value": 0.62}, "baseline": side, "speedup_in_search": 1.58,
        "confirmation": confirmation if pairs else None,
    }


def test_a_confirmed_speedup_is_the_headline(capsys: pytest.CaptureFixture[str]) -> None:
    print_report(report([(0.9, 0.5), (0.95, 0.45), (None, 0.4)], speedups=(1.8, 2.1)))
    out = capsys.readouterr().out
    assert "confirmed speedup 2.10x (min 1.80x, max 2.10x over 2 of 3 paired re-runs" in out
    assert "re-runs that gave no value: baseline 1, best 0 of 3 each" in out


def test_confirmation_without_a_single_valid_pair_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    # what the demo showed once: best and baseline each missed the target in some re-runs
    print_report(report([(0.85, None), (None, 0.97), (0.98, None)]))
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "speedup during the search: 1.58x (not confirmed)" in out
    assert "the best gave none in 2 and the baseline in 1" in out
    assert "the target was not reached in the budget" in out and "lucky seed" in out


def test_without_confirmation_runs_only_the_search_speedup_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    print_report(report([]))
    out = capsys.readouterr().out
    assert "speedup during the search: 1.58x (not confirmed)" in out
    assert "re-run" not in out


def test_a_search_speedup_that_did_not_hold_at_the_run_length_is_no_speedup(capsys: pytest.CaptureFixture[str]) -> None:
    data = report([])
    data["answer"] = {"trial": None, "settings": {"batch_size": 64}, "rejected": [
        {"trial": 10, "why": "trained 50 epochs, it reaches the baseline's accuracy 0.9917 no sooner than the "
                            "baseline (0.91x)"}]}
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "trial 10 not taken: trained 50 epochs" in out
    assert "no speedup: the search's 1.58x at the budget did not hold at your run's length" in out
    assert "speedup during the search" not in out


def test_a_speedup_whose_interval_includes_1_is_not_called_confirmed(capsys: pytest.CaptureFixture[str]) -> None:
    from autotune.intervals import median_interval

    speedups = (0.8, 1.6, 2.4)
    data = report([(1.0, 1.25), (1.0, 0.625), (1.0, 0.41)], speedups=speedups)
    interval = median_interval(list(speedups))
    data["confirmation"].update(interval=[interval.low, interval.high], coverage=interval.coverage, confirmed=False)
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "confirmed speedup" not in out
    assert "speedup 1.60x not confirmed: its 75% interval 0.80-2.40x includes 1.00x over 3 of 3" in out


def test_an_interval_wholly_below_1_says_slower(capsys: pytest.CaptureFixture[str]) -> None:
    from autotune.intervals import median_interval

    speedups = (0.7, 0.77, 0.84)
    data = report([(1.0, 1 / 0.7), (1.0, 1 / 0.77), (1.0, 1 / 0.84)], speedups=speedups)
    interval = median_interval(list(speedups))
    data["confirmation"].update(interval=[interval.low, interval.high], coverage=interval.coverage, confirmed=False)
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "speedup 0.77x not confirmed: its 75% interval 0.70-0.84x lies below 1.00x: slower than the baseline" in out
    assert "includes 1.00x" not in out


def test_the_median_interval_covers_what_it_says() -> None:
    from autotune.intervals import median_interval

    three = median_interval([2.0, 1.0, 3.0])
    assert (three.low, three.high, three.coverage) == (1.0, 3.0, 0.75)  # min-max of 3: 1 - 2/8
    ten = median_interval([float(v) for v in range(10)])
    # k = 3 would cover 89%: the widest k keeping 90% is 2 (the 2nd smallest to the 2nd largest)
    assert (ten.low, ten.high) == (1.0, 8.0) and ten.coverage == pytest.approx(1 - 2 * 11 / 1024)
    assert median_interval([]) is None


def test_one_paired_re_run_cannot_confirm(capsys: pytest.CaptureFixture[str]) -> None:
    data = report([(1.0, 0.3)], speedups=(3.3,))
    data["confirmation"].update(interval=[3.3, 3.3], coverage=0.0, confirmed=False)
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "speedup 3.30x not confirmed: 1 of 1 paired re-runs gave a ratio, too few to bound it (it takes 3)" in out


def test_a_best_that_oversubscribes_the_cores_is_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    data = report([])
    data["cpu_count"] = 2
    data["best"]["settings"] = {"batch_size": 128, "threads": 2, "workers": 2}
    print_report(data)
    assert "oversubscribed: threads=2 + workers=2 > 2 cores" in " ".join(capsys.readouterr().out.split())
    data["best"]["settings"] = {"batch_size": 128, "threads": 1, "workers": 1}
    print_report(data)
    assert "oversubscribed" not in capsys.readouterr().out


def test_a_baseline_still_improving_is_called_a_weak_target(capsys: pytest.CaptureFixture[str]) -> None:
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState, create_trial

    from autotune.study.confirm import still_improving

    from autotune.metrics import Metric

    def trial(curve: list[float]):  # noqa: ANN202
        return create_trial(state=TrialState.COMPLETE, value=1.0, params={"b": 1}, distributions={"b": IntDistribution(1, 2)},
                            user_attrs={"curve": [[i, v, None] for i, v in enumerate(curve)]})

    loss, accuracy = Metric.named("val_loss"), Metric.named("accuracy")
    assert still_improving(trial([0.5, 0.3, 0.2]), loss) and not still_improving(trial([0.5, 0.2, 0.25]), loss)
    assert still_improving(trial([0.5, 0.7, 0.8]), accuracy) and not still_improving(trial([0.5, 0.3, 0.2]), accuracy)
    assert not still_improving(trial([0.5]), loss)
    data = report([])
    data["baseline_still_improving"] = True
    print_report(data)
    assert "weak target: the baseline's accuracy was still improving" in " ".join(capsys.readouterr().out.split())


def test_no_tui_studies_show_the_running_trial_on_a_terminal(tmp_path) -> None:  # noqa: ANN001
    """In a terminal, --no-tui follows the running trial on one line, overwritten in place and
    replaced by the trial's line when it ends; piped, the output is the finished lines only."""
    import os
    import pty
    import re
    import subprocess
    import sys

    env = {**os.environ, "AUTOTUNE_HOME": str(tmp_path / "home"), "COLUMNS": "120", "TERM": "xterm"}
    args = [sys.executable, "-m", "autotune.cli", "study", "start", "--name", "tty", "--n-trials", "1",
            "--no-tui", "--budget-epochs", "1", "--confirm", "0"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=300) == 0
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert re.search(r"\r\x1b\[K  trial 0: [\d.]+%, step \d+/23, [\d,.]+ samples/s, [\dms.]+ of training", screen), screen[-2000:]
    assert re.search(r"\r\x1b\[K\[  1/1\] trial 0 ", screen)  # the finished line replaces it
    # piped (not a terminal), progress writes nothing
    import io

    from rich.console import Console

    from autotune.commands.study_output import LineReporter
    from autotune.study.events import StudyEvent

    reporter = LineReporter()
    reporter.console = Console(file=io.StringIO(), force_terminal=False)
    reporter(StudyEvent("s", "trial_progress", "", 0, {"number": 0, "step": 1, "total_steps": 2, "fraction": 0.5,
                                                      "samples_per_s": 10.0, "train_time": 0.1}))
    assert reporter.console.file.getvalue() == "" and not reporter.live_line


def test_a_baseline_that_stays_the_best_is_nothing_found_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    data = report([])
    data["best"] = dict(data["baseline"])
    data["speedup_in_search"] = 1.0
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "nothing found: no configuration beat the baseline (3 other trial(s) completed slower, 8 pruned" in out
    assert "speedup during the search" not in out
    data["keep_recipe"] = True
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "searched: systems knobs only (--keep-recipe)" in out and "among systems knobs alone" in out


def test_the_recipe_check_is_one_line_either_way() -> None:
    from autotune.commands.study_output import recipe_check_text

    kept = {"agree": True, "metric": "val_loss", "max_gap": 0.002, "noise": 0.03, "pairs": 3, "validations": 4}
    assert recipe_check_text(kept).startswith("[green]recipe kept[/]: the best's curve stays within 0.002 ")
    assert "reseeding the baseline moves it by up to 0.03)" in recipe_check_text(kept)
    assert recipe_check_text({**kept, "agree": False, "max_gap": 0.3}).startswith("[red]recipe not kept[/]")
    assert "it takes 2" in recipe_check_text({"agree": None, "why": "it takes 2 confirmation pairs"})


def test_noise_names_its_cause_the_machine_or_the_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """A noisy study on an idle machine is not a noisy machine: its runs are too short to time
    (a digits baseline reaches its target in under a second). Only a load above the cores or
    other processes keeping cores busy is the machine's."""
    from autotune.study.confirm import noise_cause

    assert noise_cause(False, False, False) is None
    assert noise_cause(True, False, False) == "run"
    assert noise_cause(True, True, False) == noise_cause(True, False, True) == "machine"
    data = report([])
    data["cpu_count"] = 2
    data["noise"] = {"margin": 0.31, "source": "re-runs", "load_avg": 1.1, "others": 0.1, "busy": False,
                     "noisy": True, "cause": "run", "run_seconds": 0.9}
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "runs too short to measure: run-to-run noise +/-31% on a machine that was not busy" in out
    assert "the baseline reaches its target in 0.90s" in out and "noisy machine" not in out
    data["noise"] = {**data["noise"], "load_avg": 3.5, "cause": "machine"}
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "noisy machine: run-to-run noise +/-31% (load average 3.5 on 2 cores)" in out


def test_the_confirmed_speedup_is_shown_as_same_training_times_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    data = report([(0.9, 0.25), (0.95, 0.24), (0.92, 0.23)], speedups=(3.8, 3.9, 4.0))
    data["speedups"] = {"total": 3.9, "same_training": 1.21, "same_training_interval": [1.15, 1.27],
                        "recipe": 3.22, "systems": {"precision": "bf16", "workers": 0}, "how": "paired step time"}
    print_report(data)
    out = " ".join(capsys.readouterr().out.split())
    assert "confirmed speedup 3.90x" in out
    assert "speedup 3.90x = same training 1.21x (precision bf16, workers 0) x recipe 3.22x" in out
    assert "same training measured by paired step time, interval 1.15-1.27x" in out


def test_a_report_without_the_split_shows_none(capsys: pytest.CaptureFixture[str]) -> None:
    for speedups in (None, {}, {"total": 3.9, "same_training": None, "recipe": None}):
        data = report([(0.9, 0.25), (0.95, 0.24), (0.92, 0.23)], speedups=(3.8, 3.9, 4.0))
        data["speedups"] = speedups
        print_report(data)
        out = capsys.readouterr().out
        assert "confirmed speedup 3.90x" in out and "same training" not in out and "recipe" not in out
