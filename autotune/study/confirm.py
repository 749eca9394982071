"""The end of a study: re-run the best and the baseline side by side with fresh seeds (the
confirmation), and the report `study start` prints and returns."""

from __future__ import annotations

import dataclasses
import statistics
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from autotune.intervals import MIN_COVERAGE, median_interval
from autotune.run.trial_process import launch
from autotune.statuses import TRIAL_METRICS, RunStatus
from autotune.storage.results import trial_counts
from autotune.storage.trial_row import row_from_frozen

if TYPE_CHECKING:
    from autotune.study.runner import StudyRunner


def confirm_best(runner: "StudyRunner", best: FrozenTrial, baseline: FrozenTrial) -> dict[str, Any]:
    """Re-run best and baseline side by side, alternating, with fresh seeds."""
    spec, objective = runner.spec, runner.objective
    runs: list[dict[str, Any]] = []
    for i in range(spec.confirm):
        pair: dict[str, Any] = {"seed": (spec.seed or 0) + 1000 + i}
        for label, trial in (("baseline", baseline), ("best", best)):
            runner.events.emit("confirming", f"confirming: {label} run {i + 1}/{spec.confirm}",
                               which=label, run=i + 1, of=spec.confirm)
            request = runner.request(trial.user_attrs["settings"], False, str(runner.logs_dir / f"confirm-{label}-{i}.log"))
            request.options = dataclasses.replace(
                request.options, seed=pair["seed"], target=runner.target, stop_at_target=objective.stop_at_target,
            )
            with runner.lease() as gpus:
                runner.use_gpus(request, gpus)
                outcome = launch(request)
            result = outcome.result or {}
            value = None
            if outcome.status == RunStatus.OK and not objective.multi:
                value = objective.values(result)
            pair[label] = {"status": outcome.status, "value": value,
                           **{k: result.get(k) for k in ("throughput", "metric_value", "val_accuracy", "time_to_target", "peak_memory_bytes")}}
        if pair["best"]["value"] and pair["baseline"]["value"]:
            pair["speedup"] = objective.speedup(pair["best"]["value"], pair["baseline"]["value"])
        runs.append(pair)
    speedups = [r["speedup"] for r in runs if r.get("speedup") is not None]
    confirmation: dict[str, Any] = {
        "runs": runs, "best_number": best.number, "baseline_number": baseline.number,
        "repeats": spec.confirm, "valid_pairs": len(speedups),
    }
    interval = median_interval(speedups)
    if interval is not None:
        confirmation.update(
            speedup_median=statistics.median(speedups), speedup_min=min(speedups), speedup_max=max(speedups),
            interval=[interval.low, interval.high], coverage=interval.coverage,
            # a speedup is confirmed only when its interval leaves out "no faster at all"
            confirmed=interval.low > 1.0 and interval.coverage >= MIN_COVERAGE,
        )
    for label in ("best", "baseline"):
        values = [r[label]["value"] for r in runs if r[label]["value"] is not None]
        confirmation[f"{label}_value_median"] = statistics.median(values) if values else None
    assert runner.study is not None
    runner.study.set_user_attr("confirmation", confirmation)
    return confirmation


def build_report(runner: "StudyRunner", confirm: bool = True) -> dict[str, Any]:
    """What the study found: counts, baseline, best (or the Pareto front), speedups."""
    study, spec, objective = runner.study, runner.spec, runner.objective
    assert study is not None
    trials = study.get_trials(deepcopy=False)
    tally = trial_counts([row_from_frozen(t) for t in trials])
    counts = {k: tally[k] for k in ("complete", "pruned", "failed")}
    if tally["surplus"]:
        counts["surplus"] = tally["surplus"]
    report: dict[str, Any] = {
        "study": spec.name, "workload": spec.workload, "objective": spec.objective,
        "space": spec.space, "target": runner.target, "metric": runner.p.metric.to_dict(), "budget": spec.budget_text,
        "storage": runner.p.storage_url, "device": runner.p.hardware.device_type,
        "cpu_count": runner.p.hardware.cpu_count,
        "counts": counts, "trials": sum(1 for t in trials if t.user_attrs.get("autotune_status") != RunStatus.SURPLUS),
        "done": tally["done"],
    }
    baseline = runner.baseline_trial()
    if baseline is not None:
        report["baseline"] = trial_summary(baseline)
        report["baseline_still_improving"] = still_improving(baseline)
    if objective.multi:
        report["pareto_front"] = [trial_summary(t) for t in study.best_trials]
        return report
    best = runner.best_trial()
    if best is None:
        report["best"] = None
        return report
    report["best"] = trial_summary(best)
    if baseline is not None and baseline.state == TrialState.COMPLETE and baseline.value:
        report["speedup_in_search"] = objective.speedup(best.value, baseline.value)
    if confirm and spec.confirm > 0 and baseline is not None and best.number != baseline.number:
        report["confirmation"] = confirm_best(runner, best, baseline)
    elif "confirmation" in study.user_attrs:
        report["confirmation"] = study.user_attrs["confirmation"]
    return report


def still_improving(trial: FrozenTrial) -> bool:
    """Whether a trial's last validation was its best so far (Optuna's intermediate values are
    oriented so that lower is better): a baseline still improving when its budget ran out sets a
    weak target, one an under-trained model reaches."""
    values = [v for _, v in sorted(trial.intermediate_values.items())]
    return len(values) >= 2 and values[-1] < min(values[:-1])


def trial_summary(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value if t.values and len(t.values) == 1 else t.values,
        "settings": t.user_attrs.get("settings", {}),
        "metrics": {k: t.user_attrs.get(k) for k in TRIAL_METRICS if t.user_attrs.get(k) is not None},
        "reason": t.user_attrs.get("reason"),
    }
