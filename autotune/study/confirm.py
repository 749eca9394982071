"""The end of a study: re-run the best and the baseline side by side with fresh seeds (the
confirmation), and the report `study start` prints and returns."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from autotune.study.ablation import ablation_path
from autotune.study.answer import applies as answer_applies
from autotune.study.answer import find_answer, speedups
from autotune.study.reruns import missed_time, real_value, rerun, timed_against
from autotune.intervals import MIN_COVERAGE, median_interval
from autotune.metrics import Metric
from autotune.statuses import TRIAL_METRICS, RunStatus
from autotune.storage.results import trial_counts
from autotune.storage.trial_row import row_from_frozen
from autotune.study.recipe import curve_values, recipe_check
from autotune.study.trial_watch import noise_margin

if TYPE_CHECKING:
    from autotune.study.context import StudyState, TrialContext
    from autotune.study.events import StudyEvents
    from autotune.study.launcher import TrialLauncher


def confirm_best(launcher: "TrialLauncher", events: "StudyEvents", best: FrozenTrial,
                 baseline: FrozenTrial, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Re-run best and baseline side by side, alternating, with fresh seeds: `best`'s settings,
    or the answer's `settings` that came from it (autotune.study.answer)."""
    answer = best.user_attrs["settings"] if settings is None else settings
    context = launcher.context
    spec, objective = context.spec, context.objective
    runs: list[dict[str, Any]] = []
    for i in range(spec.confirm):
        pair: dict[str, Any] = {"seed": (spec.seed or 0) + 1000 + i}
        if context.task.serves_model:
            events.emit("confirming", f"confirming: baseline and best timed together {i + 1}/{spec.confirm}",
                        which="baseline and best", run=i + 1, of=spec.confirm)
            pair.update(serving_pair(launcher, answer, baseline, pair["seed"], i))
            runs.append(pair)
            continue
        pair.update(training_pair(launcher, events, answer, baseline.user_attrs["settings"], pair["seed"], i))
        runs.append(pair)
    speedups = [r["speedup"] for r in runs if r.get("speedup") is not None]
    confirmation: dict[str, Any] = {
        "runs": runs, "best_number": best.number, "baseline_number": baseline.number,
        "repeats": spec.confirm, "valid_pairs": len(speedups),
        "lower_bound_pairs": sum(1 for r in runs if r.get("speedup_is_lower_bound")),
    }
    interval = median_interval(speedups)
    if interval is not None:
        confirmation.update(
            speedup_median=statistics.median(speedups), speedup_min=min(speedups), speedup_max=max(speedups),
            interval=[interval.low, interval.high], coverage=interval.coverage,
            # a speedup is confirmed only when its interval leaves out "no faster at all"
            confirmed=interval.low > 1.0 and interval.coverage >= MIN_COVERAGE,
        )
    for label, trial in (("best", best), ("baseline", baseline)):
        values = [r[label]["value"] for r in runs if r[label]["value"] is not None]
        confirmation[f"{label}_value_median"] = statistics.median(values) if values else None
        if objective.projected and spec.run_scale == 1.0 and values and trial.value and (
                label == "baseline" or answer == best.user_attrs["settings"]):
            # the search's projection against the time measured here, end to end, fresh seeds
            confirmation.setdefault("projection", {})[label] = {
                "projected": trial.value, "measured": statistics.median(values),
                "error": statistics.median(values) / trial.value - 1.0,
            }
    if spec.keep_recipe:
        confirmation["recipe_check"] = recipe_check(runs, context.metric.name)
    launcher.state.study.set_user_attr("confirmation", confirmation)
    return confirmation


def training_pair(launcher: "TrialLauncher", events: "StudyEvents", answer: dict[str, Any],
                  baseline: dict[str, Any], seed: int, i: int) -> dict[str, Any]:
    """One pair of a training study's confirmation: the baseline, then the answer, each trained
    to the target with `seed`; the pair's speedup, or the bound it gives."""
    context = launcher.context
    spec, objective = context.spec, context.objective
    pair: dict[str, Any] = {}
    for label, run_settings in (("baseline", baseline), ("best", answer)):
        events.emit("confirming", f"confirming: {label} run {i + 1}/{spec.confirm}",
                    which=label, run=i + 1, of=spec.confirm)
        outcome, result = rerun(launcher, run_settings, seed, f"confirm-{label}-{i}.log")
        value = real_value(objective, outcome, result)
        pair[label] = {"status": outcome.status, "value": value, **{k: result.get(k) for k in (
            "throughput", "metric_value", "val_accuracy", "time_to_target", "projected_time_to_target",
            "setup_time", "peak_memory_bytes")}}
        if spec.keep_recipe:  # the curves the recipe check compares
            pair[label]["curve"] = curve_values(result)
        if label == "baseline" and value is None:
            # its whole run, a lower bound on its time to the target (pair_speedup)
            pair[label]["missed_after"] = missed_time(objective, outcome, result)
    speedup, lower_bound = pair_speedup(objective, pair["best"], pair["baseline"])
    if speedup is not None:
        pair["speedup"] = speedup
    if lower_bound:
        pair["speedup_is_lower_bound"] = True
    return pair


def serving_pair(launcher: "TrialLauncher", best: dict[str, Any], baseline: FrozenTrial, seed: int,
                 i: int) -> dict[str, Any]:
    """One pair of an inference study's confirmation: the best and the baseline served in one
    process, timed in alternating blocks (autotune.inference.compare); its speedup is the
    median of the blocks' latency ratios."""
    outcome, result = timed_against(launcher, baseline.user_attrs["settings"], best, seed,
                                    f"confirm-{i}.log")
    pair: dict[str, Any] = {"timed_together": True}
    for label, side in (("baseline", "reference"), ("best", "candidate")):
        measured = result.get(side) or {}
        pair[label] = {"status": outcome.status, "value": measured.get("latency_p50"),
                       "latency_p95": measured.get("latency_p95"), "blocks": measured.get("blocks")}
        if outcome.status != RunStatus.OK:
            pair[label]["error"] = outcome.error
    ratios = result.get("ratios") or []
    if outcome.status == RunStatus.OK and ratios:
        pair["speedup"] = statistics.median(ratios)
        pair["block_ratios"] = ratios
    return pair


def pair_speedup(objective: Any, best: dict[str, Any], baseline: dict[str, Any]) -> tuple[float | None, bool]:
    """One confirmation pair's speedup, and whether it is only a lower bound; None when the pair
    gives no ratio (either run failed, or the best missed the target).

    The target sits a little below the baseline's own final value, so a fresh seed of the
    baseline can end its budget just short of it (`missed_after`: its whole run). Its time to
    target is then at least that, and the ratio at least the one it gives: counting the pair
    understates the speedup, so the interval's low end, which "confirmed" rests on, stays a lower
    bound. A best that missed gives only an upper bound, which can confirm nothing: no ratio."""
    if best.get("value") and baseline.get("value"):
        return objective.speedup(best["value"], baseline["value"]), False
    if best.get("value") and baseline.get("missed_after"):
        return objective.speedup(best["value"], baseline["missed_after"]), True
    return None, False


# At most this many trials tied with the best within the noise are re-run to choose among them
PLAYOFF = 3


def playoff(launcher: "TrialLauncher", events: "StudyEvents", best: FrozenTrial,
            report: dict[str, Any]) -> FrozenTrial:
    """Choose among the trials whose values lie within the noise margin of the best: each is
    re-run once with a fresh seed and the one with the best mean of its two values wins. The
    best of a search is partly the luckiest (a seed that reached the target at an early
    validation); a tie within the noise is not a win. Recorded as the study's "chosen_best"."""
    state = launcher.state
    objective, spec = launcher.context.objective, launcher.context.spec
    if objective.multi or best.value is None:
        return best
    margin = noise_margin(state.baseline_trial())
    complete = [t for t in state.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("baseline") and t.value is not None and t.user_attrs.get("feasible", True)]
    if objective.directions[0] == "minimize":
        tied = sorted((t for t in complete if t.value <= best.value * (1 + margin)), key=lambda t: t.value)
    else:
        tied = sorted((t for t in complete if t.value >= best.value / (1 + margin)), key=lambda t: -t.value)
    tied = tied[:PLAYOFF]
    if len(tied) < 2:
        return best
    rows = []
    for i, trial in enumerate(tied):
        events.emit("confirming", f"choosing among trials tied within the noise: trial {trial.number}",
                    which=f"trial {trial.number}", run=i + 1, of=len(tied))
        outcome, result = rerun(launcher, trial.user_attrs["settings"], (spec.seed or 0) + 500 + i,
                                f"playoff-{trial.number}.log")
        # projected, like the search values it is averaged with
        value = objective.values(result) if outcome.status == RunStatus.OK else None
        rows.append({"number": trial.number, "search_value": trial.value, "rerun_value": value})
    winner = playoff_winner(rows, objective.directions[0])
    choice = {"number": winner["number"], "against": best.value, "contenders": rows, "margin": margin}
    state.study.set_user_attr("chosen_best", choice)
    report["playoff"] = choice
    return next(t for t in tied if t.number == winner["number"])


def playoff_winner(rows: list[dict[str, Any]], direction: str) -> dict[str, Any]:
    """The contender with the best mean of its search value and its re-run; one whose re-run
    did not reach the target again (or failed) loses to any that did."""
    sign = 1.0 if direction == "minimize" else -1.0

    def score(row: dict[str, Any]) -> float:
        if row["rerun_value"] is None:
            return float("inf")
        return sign * (row["search_value"] + row["rerun_value"]) / 2

    return min(rows, key=score)


def build_report(context: "TrialContext", state: "StudyState", launcher: "TrialLauncher", events: "StudyEvents",
                 confirm: bool = True) -> dict[str, Any]:
    """What the study found: counts, baseline, best (or the Pareto front), speedups."""
    study, spec, objective = state.study, context.spec, context.objective
    trials = study.get_trials(deepcopy=False)
    tally = trial_counts([row_from_frozen(t) for t in trials])
    counts = {k: tally[k] for k in ("complete", "pruned", "failed")}
    if tally["surplus"]:
        counts["surplus"] = tally["surplus"]
    report: dict[str, Any] = {
        "study": spec.name, "workload": spec.workload, "objective": spec.objective,
        "space": spec.space, "target": state.target, "metric": context.metric.to_dict(), "budget": spec.budget_text,
        "storage": context.storage_url, "device": context.hardware.device_type,
        "cpu_count": context.hardware.cpu_count,
        "keep_recipe": spec.keep_recipe,
        "counts": counts, "trials": sum(1 for t in trials if t.user_attrs.get("autotune_status") != RunStatus.SURPLUS),
        "done": tally["done"],
    }
    baseline = state.baseline_trial()
    if baseline is not None:
        report["baseline"] = trial_summary(baseline)
        report["baseline_still_improving"] = still_improving(baseline, context.metric)
        # what the script's loop declared it cannot take: searched no further (TrialObjective._refused)
        report["refused"] = {k: v for k, v in (baseline.user_attrs.get("refuses") or {}).items()
                             if k in context.searched}
    if objective.multi:
        report["pareto_front"] = [trial_summary(t) for t in study.best_trials]
        return report
    best = state.best_trial()
    if best is None:
        report["best"] = None
        report["noise"] = noise(context, trials, baseline, None)
        return report
    report["best"] = trial_summary(best)
    if baseline is not None and baseline.state == TrialState.COMPLETE and baseline.value:
        report["speedup_in_search"] = objective.speedup(best.value, baseline.value)
    if confirm and spec.confirm > 0 and baseline is not None and best.number != baseline.number:
        confirm_answer(launcher, events, playoff(launcher, events, best, report), baseline, report)
    elif confirm and spec.confirm > 0 and baseline is not None and fits_after_search(launcher):
        # no recipe beat the baseline's, but the systems knobs the search held at the baseline's
        # are still to fit: "the same training, faster" does not need a better recipe
        confirm_answer(launcher, events, best, baseline, report)
    else:  # resumed with nothing left to do (or --confirm 0): what an earlier run found, if anything
        for key in ("confirmation", "answer", "speedups"):
            if key in study.user_attrs:
                report[key] = study.user_attrs[key]
    if "why_faster" in study.user_attrs:
        report["why_faster"] = study.user_attrs["why_faster"]
    report["noise"] = noise(context, trials, baseline, report.get("confirmation"))
    study.set_user_attr("noise", report["noise"])
    return report


def fits_after_search(launcher: "TrialLauncher") -> bool:
    """Whether the study's answer fits systems knobs the search left at the baseline's (a staged
    study, autotune.study.answer)."""
    return answer_applies(launcher) and bool(launcher.context.space.fitted)


def confirm_answer(launcher: "TrialLauncher", events: "StudyEvents", best: FrozenTrial, baseline: FrozenTrial,
                   report: dict[str, Any]) -> None:
    """Confirm the search's `best` against the baseline into `report`: for training to a target,
    the answer made from it (autotune.study.answer: riders dropped, held at the run's length,
    systems fitted) and its speedup in two factors; then why it is faster."""
    study, spec = launcher.state.study, launcher.context.spec
    report["best"] = trial_summary(best)
    settings = best.user_attrs["settings"]
    answer = find_answer(launcher, events, best, baseline) if answer_applies(launcher) else None
    if answer is not None:
        report["answer"] = answer.to_dict()
        study.set_user_attr("answer", report["answer"])
        settings = answer.settings
        if settings == baseline.user_attrs["settings"]:
            return  # nothing held: the report says why (the answer's rejected candidates)
        if answer.trial is not None and answer.trial != best.number:  # a runner-up's recipe held
            best = next(t for t in study.get_trials(deepcopy=False) if t.number == answer.trial)
            report["best"] = trial_summary(best)
    report["confirmation"] = confirm_best(launcher, events, best, baseline, settings)
    if answer is not None:
        report["speedups"] = speedups(answer, report["confirmation"], spec.keep_recipe)
        study.set_user_attr("speedups", report["speedups"])
    if spec.explain and report["confirmation"].get("confirmed"):
        path = ablation_path(launcher, events, settings, baseline, report["confirmation"],
                             searched_threads="threads" in best.params)
        if path is not None:
            study.set_user_attr("why_faster", path)


# Noise above this, a load average above the cores, or other processes keeping this many cores
# busy during the trials hides the differences a study looks for (or makes them this machine's
# state rather than the configuration's)
NOISY = 0.3
BUSY_CORES = 0.5


def noise(
    context: "TrialContext", trials: list[FrozenTrial], baseline: FrozenTrial | None, conf: dict[str, Any] | None
) -> dict[str, Any]:
    """The machine's noise as this study measured it, and the load average its trials ended
    with. Run to run: how far the baseline's re-runs in confirmation spread about their median
    (the same configuration, fresh seeds, so this is what a speedup must stand out of); for an
    inference study, whose pairs time both in one process, how far the baseline's blocks in a
    pair spread (the median over pairs); before there are two, the spread of the baseline's own
    steps (pruning's margin)."""
    margin, source = noise_margin(baseline), "steps"
    pairs = (conf or {}).get("runs", [])
    runs = [r["baseline"]["value"] for r in pairs if r["baseline"]["value"]]
    blocks = [r["baseline"].get("blocks") or [] for r in pairs if r.get("timed_together")]
    if any(len(b) >= 2 for b in blocks):
        # an inference pair's speedup stands out of its blocks' noise, not of how far whole
        # processes drift apart (which timing the two together takes out)
        margin = statistics.median((max(b) - min(b)) / statistics.median(b) for b in blocks if len(b) >= 2)
        source = "blocks"
    elif len(runs) >= 2:
        margin, source = (max(runs) - min(runs)) / statistics.median(runs), "re-runs"
    def median_of(key: str) -> float | None:
        values = [t.user_attrs["machine"][key] for t in trials if key in (t.user_attrs.get("machine") or {})]
        return statistics.median(values) if values else None

    load, others = median_of("load_avg"), median_of("others")
    cores = context.hardware.cpu_count
    busy = others is not None and others > BUSY_CORES
    loaded = load is not None and bool(cores) and load > cores
    noisy = margin > NOISY or loaded or busy
    return {"margin": margin, "source": source, "load_avg": load, "others": others, "busy": busy,
            "noisy": noisy, "cause": noise_cause(noisy, loaded, busy),
            # the re-runs' values are seconds to the target only for time-to-accuracy (samples/s for
            # throughput): the runs' length is said for that objective alone
            "run_seconds": statistics.median(runs) if runs and context.objective.projected else None}


def noise_cause(noisy: bool, loaded: bool, busy: bool) -> str | None:
    """Whose noise it is: the machine's (a load above the cores, other processes keeping cores
    busy) or, on a machine that was neither, the runs' own (too short to time to better than
    that: a baseline that reaches its target in under a second); None when it is not noisy."""
    if not noisy:
        return None
    return "machine" if loaded or busy else "run"


def still_improving(trial: FrozenTrial, metric: Metric) -> bool:
    """Whether a trial's last validation was its best so far (its "curve" user attr): a
    baseline still improving when its budget ran out sets a weak target, one an under-trained
    model reaches."""
    values = [point[1] for point in trial.user_attrs.get("curve", []) if point[1] is not None]
    if len(values) < 2:
        return False
    earlier = values[:-1]
    return values[-1] > max(earlier) if metric.higher_is_better else values[-1] < min(earlier)


def trial_summary(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "value": t.value if t.values and len(t.values) == 1 else t.values,
        "settings": t.user_attrs.get("settings", {}),
        "metrics": {k: t.user_attrs.get(k) for k in TRIAL_METRICS if t.user_attrs.get(k) is not None},
        "reason": t.user_attrs.get("reason"),
    }
