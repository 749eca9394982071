"""What a study's trials add up to: the done count, the best trial, best so far, the Pareto front,
importances, the speedup and the summary a list or a header shows.

Each rule is defined once here and used by the runner, `study list/show/best/export` and the
terminal UI, so they cannot disagree. Torch-free, Textual-free and, except for importances,
Optuna-free: rows come from autotune.storage.reading.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import warnings
from typing import TYPE_CHECKING, Any, Iterable

from autotune.metrics import Metric
from autotune.objectives import OBJECTIVES, Objective
from autotune.statuses import ACTIVE_STUDY_STATES, RunStatus
from autotune.storage.reading import StudyLike, cache_importances, cached_importances, direct_reader, trial_rows
from autotune.storage.speedups import speedup_factors
from autotune.storage.trial_row import TrialRow
from autotune.tasks import task_of

if TYPE_CHECKING:
    import optuna


# Counting -----------------------------------------------------------------------------------


def trial_counts(rows: list[TrialRow]) -> dict[str, int]:
    """How a study's trials stand. `done` counts toward --n-trials: finished trials, less those
    another trial runs again (retried) and those that never trained because the study already
    had its count (surplus). complete/pruned/failed count finished trials that are not surplus;
    a retried FAIL is in `failed` and in `retried`."""
    retried = {n for r in rows for n in r.retries}
    counts = {"done": 0, "complete": 0, "pruned": 0, "failed": 0, "running": 0, "waiting": 0,
              "retried": 0, "surplus": 0}
    for r in rows:
        if r.state == "RUNNING":
            counts["running"] += 1
        elif r.state == "WAITING":
            counts["waiting"] += 1
        if not r.finished:
            continue
        if r.autotune_status == RunStatus.SURPLUS:
            counts["surplus"] += 1
            continue
        counts[{"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}[r.state]] += 1
        if r.number in retried:
            counts["retried"] += 1
        else:
            counts["done"] += 1
    return counts


def done_count(rows: list[TrialRow]) -> int:
    """Trials that count toward --n-trials (see trial_counts)."""
    return trial_counts(rows)["done"]


# Derived views -------------------------------------------------------------------------------


def study_objective(study: StudyLike) -> str | None:
    attrs = study.user_attrs.get("autotune") or {}
    return attrs.get("objective")


def direction_names(study: StudyLike) -> list[str]:
    """"minimize" / "maximize" per objective, for an optuna.Study or a SqliteStudy alike."""
    return [d.name.lower() for d in study.directions]


def _maximize(study: StudyLike) -> bool:
    return study.directions[0].name == "MAXIMIZE"


def best_so_far(study: StudyLike, rows: list[TrialRow] | None = None) -> list[tuple[int, float]]:
    """(trial number, best value among COMPLETE trials up to it) for each finished trial.

    Single-objective studies only; [] for multi-objective ones. Non-finite values are ignored.
    """
    if len(study.directions) != 1:
        return []
    return best_so_far_rows(rows if rows is not None else trial_rows(study), _maximize(study))


def best_so_far_rows(rows: list[TrialRow], maximize: bool) -> list[tuple[int, float]]:
    best: float | None = None
    out: list[tuple[int, float]] = []
    for row in rows:
        if not row.finished:
            continue
        value = row.value
        if row.state == "COMPLETE" and row.feasible and value is not None and math.isfinite(value):
            if best is None or (value > best if maximize else value < best):
                best = value
        if best is not None:
            out.append((row.number, best))
    return out


def pareto_front(study: StudyLike, rows: list[TrialRow] | None = None) -> list[TrialRow]:
    """Non-dominated COMPLETE trials (the best trial for a single-objective study), by number."""
    rows = rows if rows is not None else trial_rows(study)
    signs = [1.0 if d == "maximize" else -1.0 for d in direction_names(study)]
    return pareto_rows(rows, signs)


def pareto_rows(rows: list[TrialRow], signs: list[float]) -> list[TrialRow]:
    """Non-dominated rows; `signs` is +1 per maximized objective, -1 per minimized one."""
    candidates = [
        (tuple(s * v for s, v in zip(signs, r.values)), r)
        for r in rows
        if r.state == "COMPLETE" and r.values and len(r.values) == len(signs)
        and all(math.isfinite(v) for v in r.values)
    ]
    # Sorted best-first on every objective: a point can only be dominated by one before it.
    candidates.sort(key=lambda c: c[0], reverse=True)
    front: list[tuple[tuple[float, ...], TrialRow]] = []
    for point, row in candidates:
        if not any(_dominates(f, point) for f, _ in front):
            front.append((point, row))
    return sorted((r for _, r in front), key=lambda r: r.number)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def latency_drop_front(points: Iterable[tuple[int, float | None, float | None]]) -> list[int]:
    """The trial numbers on the Pareto front of (number, latency_p50, metric_drop) points, lower
    being better on both, sorted by latency (then number). A point missing either value, or with
    a non-finite one, is left out; points with equal latency and equal drop are all on the front
    (neither dominates the other). Feasibility does not enter: see inference_front."""
    valid = sorted((lat, dr, n) for n, lat, dr in points
                   if isinstance(lat, (int, float)) and isinstance(dr, (int, float))
                   and math.isfinite(lat) and math.isfinite(dr))
    front: list[int] = []
    faster_drop = math.inf  # the lowest drop of any strictly faster point
    for _, group in itertools.groupby(valid, key=lambda p: p[0]):
        same = list(group)  # equal latency, by drop: only the lowest drop is not dominated
        lowest = same[0][1]
        if lowest < faster_drop:  # a faster point dropping as little or less dominates it
            front.extend(n for _, dr, n in same if dr == lowest)
            faster_drop = lowest
    return front


def inference_front(rows: list[TrialRow]) -> list[int]:
    """An inference study's trade-off between serving fast and keeping accuracy: its COMPLETE
    trials' Pareto front of latency p50 against metric drop (latency_drop_front), by latency.

    Infeasible trials (past the accuracy guard) are considered too, so the front shows what a
    faster model would cost in accuracy; callers mark those the guard rejects. A trial's latency
    is the one the study ranks it by: the unoptimized model's over its `paired_speedup` (timed
    beside it in its process), its own measured p50 when it has none."""
    base = next((r.metrics.get("latency_p50") for r in rows if r.baseline and r.state == "COMPLETE"), None)

    def latency(r: TrialRow) -> Any:
        paired = r.metrics.get("paired_speedup")
        if base and isinstance(paired, (int, float)) and paired > 0 and not r.baseline:
            return base / paired
        return r.metrics.get("latency_p50")

    return latency_drop_front(
        (r.number, latency(r), r.metrics.get("metric_drop")) for r in rows if r.state == "COMPLETE"
    )


def importances(study: StudyLike, rows: list[TrialRow] | None = None) -> dict[str, float]:
    """Parameter importances with Optuna's default evaluator (PED-ANOVA), largest first.

    {} with fewer than 3 COMPLETE trials or when Optuna cannot compute them. Pareto studies are
    scored on throughput (their second objective). Cached until the COMPLETE count changes.
    """
    import optuna

    rows = rows if rows is not None else trial_rows(study)
    complete = [r for r in rows if r.state == "COMPLETE" and r.values and r.params]
    if len(complete) < 3:
        return {}
    cached = cached_importances(study)
    if cached is not None and cached[0] == len(complete):
        return dict(cached[1])
    target = None
    if len(study.directions) > 1:
        index = OBJECTIVES.get(study_objective(study) or "", Objective()).importance_value
        # PED-ANOVA scores what makes the target low: flip maximized objectives.
        sign = -1.0 if direction_names(study)[index] == "maximize" else 1.0
        target = lambda t: sign * t.values[index]  # noqa: E731
    try:
        source = study if direct_reader(study) is None else _in_memory_copy(study, complete)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = dict(optuna.importance.get_param_importances(source, target=target))
    except Exception:
        result = {}
    cache_importances(study, len(complete), result)
    return dict(result)


def _in_memory_copy(study: StudyLike, rows: list[TrialRow]) -> "optuna.Study":
    """The COMPLETE trials in an in-memory study: importance evaluators read through the public
    Study API, which would otherwise reload every trial through SQLAlchemy."""
    import optuna

    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))  # no "A new study created in memory" line
    try:
        copy = optuna.create_study(directions=direction_names(study))
    finally:
        logger.setLevel(level)
    copy.add_trials([
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.COMPLETE, values=r.values, params=r.params,
            distributions=r.distributions,
        )
        for r in rows
    ])
    return copy


def baseline_row(
    study: StudyLike, rows: list[TrialRow], user_attrs: dict[str, Any] | None = None
) -> TrialRow | None:
    """The baseline trial: user attr baseline_number, else the first row flagged baseline."""
    number = (study.user_attrs if user_attrs is None else user_attrs).get("baseline_number")
    if isinstance(number, int):
        if 0 <= number < len(rows) and rows[number].number == number:  # rows are by number
            return rows[number]
        found = next((r for r in rows if r.number == number), None)
        if found is not None:
            return found
    return next((r for r in rows if r.baseline), None)


def best_row(
    study: StudyLike, rows: list[TrialRow] | None = None, user_attrs: dict[str, Any] | None = None
) -> TrialRow | None:
    """The trial to recommend. Single objective: the best COMPLETE value (feasible trials only),
    the trial the study's answer came from, or the one a re-run chose among those tied with it
    within the noise ("chosen_best"). Pareto: on the front, the highest throughput among trials
    at least as accurate as the baseline (the most accurate when none is)."""
    rows = rows if rows is not None else trial_rows(study)
    if len(study.directions) == 1:
        sign = 1.0 if _maximize(study) else -1.0
        ok = [
            r for r in rows
            if r.state == "COMPLETE" and r.feasible and r.value is not None and math.isfinite(r.value)
        ]
        if not ok:
            return None
        top = max(ok, key=lambda r: (sign * r.value, -r.number))  # type: ignore[operator]
        # A re-run among trials tied within the noise (autotune.study.confirm.playoff) may have
        # chosen another; it stands while no later trial beats the value it was chosen against.
        attrs = user_attrs if user_attrs is not None else (getattr(study, "user_attrs", None) or {})
        answer = attrs.get("answer") or {}
        if answer.get("against") == top.value:  # the answer's trial (None: it kept the baseline's recipe)
            return next((r for r in rows if r.number == answer.get("trial") or answer.get("trial") is None
                         and r.baseline), top)
        chosen = attrs.get("chosen_best") or {}
        if chosen.get("against") == top.value:
            return next((r for r in ok if r.number == chosen.get("number")), top)
        return top
    front = pareto_front(study, rows)
    if not front:
        return None
    base = baseline_row(study, rows, user_attrs)
    acc = base.values[0] if base is not None and base.values else None
    good = [r for r in front if acc is None or r.values[0] >= acc]  # type: ignore[index]
    if good and len(study.directions) > 1:
        return max(good, key=lambda r: r.values[1])  # type: ignore[index]
    return max(front, key=lambda r: r.values[0])  # type: ignore[index]


def speedup(
    study: StudyLike, rows: list[TrialRow], best: TrialRow | None,
    user_attrs: dict[str, Any] | None = None,
) -> float | None:
    """How much better the best trial is than the baseline.

    minimize: baseline / best; maximize: best / baseline; pareto: throughput ratio of the
    recommended trial. None when the baseline has no usable value.
    """
    base = baseline_row(study, rows, user_attrs)
    if best is None or base is None or base.state != "COMPLETE" or not base.values or not best.values:
        return None
    if len(study.directions) > 1:
        if len(base.values) < 2 or len(best.values) < 2:
            return None
        num, den = best.values[1], base.values[1]
    elif _maximize(study):
        num, den = best.values[0], base.values[0]
    else:
        num, den = base.values[0], best.values[0]
    if not (math.isfinite(num) and math.isfinite(den)) or den <= 0:
        return None
    return num / den


def summary(
    study: StudyLike, store_row: dict[str, Any] | None, rows: list[TrialRow] | None = None,
    now: float | None = None, user_attrs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a study list or header shows: progress, best, speedup, elapsed and ETA."""
    rows = rows if rows is not None else trial_rows(study)
    now = time.time() if now is None else now
    user_attrs = study.user_attrs if user_attrs is None else user_attrs
    attrs = user_attrs.get("autotune") or {}
    counts = trial_counts(rows)
    done = counts["done"]
    state = (store_row or {}).get("status") or ("finished" if rows and all(r.finished for r in rows) else "unknown")
    total = (store_row or {}).get("n_trials") or attrs.get("n_trials") or len(rows)
    best = best_row(study, rows, user_attrs)
    timing = _timing(rows, store_row, state, max(total - done, 0), now)
    confirmation = user_attrs.get("confirmation") or {}
    metric = Metric.from_dict(user_attrs.get("metric"))
    task = task_of(attrs)
    return {
        "name": study.study_name,
        "state": state,
        "task": task.name,
        # an inference study's accuracy guard: the unoptimized model's metric, the bound, --max-drop
        "guard": task.guard(user_attrs, attrs),
        "objective": attrs.get("objective") or (store_row or {}).get("objective"),
        "directions": direction_names(study),
        "workload": attrs.get("workload") or (store_row or {}).get("workload"),
        "metric": metric.describe(),
        "metric_info": metric.to_dict(),
        "target": user_attrs.get("target", attrs.get("target")),
        "budget": _budget_text(attrs),
        # The device asked for, else the one the study's fingerprint recorded (never "auto").
        "device": attrs.get("device") or (user_attrs.get("hardware") or {}).get("device_type"),
        "done": done,
        "total": total,
        "complete": counts["complete"],
        "pruned": counts["pruned"],
        "failed": counts["failed"],
        "running": counts["running"],
        "surplus": counts["surplus"],
        "retried": counts["retried"],
        "best_number": best.number if best else None,
        "best_value": best.value if best and len(study.directions) == 1 else None,
        "best_values": list(best.values) if best and best.values else None,
        "speedup": speedup(study, rows, best, user_attrs),
        "confirmed_speedup": confirmation.get("speedup_median") if confirmed(confirmation) else None,
        "confirmed_range": (
            tuple(confirmation.get("interval") or (confirmation["speedup_min"], confirmation["speedup_max"]))
            if confirmed(confirmation) and "speedup_min" in confirmation else None
        ),
        # the re-runs' verdict, whether or not it confirmed (formatting.confirmation_text)
        "confirmation": {k: confirmation[k] for k in CONFIRMATION_KEYS if k in confirmation} or None,
        "why_faster": user_attrs.get("why_faster"), "answer": user_attrs.get("answer"),  # autotune.study.answer
        "noise": user_attrs.get("noise"),
        "speedups": speedup_factors(user_attrs),
        **timing,
    }


def _timing(
    rows: list[TrialRow], store_row: dict[str, Any] | None, state: str, remaining: int, now: float
) -> dict[str, float | None]:
    """A study's elapsed seconds (until now while it is active, else until it ended), and while
    it is active the time its `remaining` trials should take at the mean finished trial's."""
    durations = [r.duration for r in rows if r.finished and r.duration is not None]
    starts = [r.started_at for r in rows[:1] if r.started_at is not None]
    started = starts[0] if starts else (store_row or {}).get("started_at") or (store_row or {}).get("created_at")
    finished_at = (store_row or {}).get("finished_at")
    end = finished_at if state not in ACTIVE_STUDY_STATES and finished_at else now
    if state not in ACTIVE_STUDY_STATES and not finished_at:
        ends = [r.completed_at for r in rows if r.completed_at is not None]
        end = max(ends) if ends else now
    mean = sum(durations) / len(durations) if durations else None
    eta = remaining * mean if mean is not None and remaining and state in ACTIVE_STUDY_STATES else None
    return {"elapsed": max(end - started, 0.0) if started else None, "eta": eta, "mean_trial_seconds": mean}


# What a summary keeps of a study's confirmation (autotune.study.confirm): enough to say it.
CONFIRMATION_KEYS = ("speedup_median", "speedup_min", "speedup_max", "interval", "coverage", "confirmed",
                     "valid_pairs", "repeats")


def confirmed(confirmation: dict[str, Any]) -> bool:
    """Whether a study's confirmation confirmed its speedup: the interval of the paired re-runs'
    median lies above 1 (autotune.intervals). Older studies recorded no interval: their median."""
    if confirmation.get("speedup_median") is None:
        return False
    return bool(confirmation.get("confirmed", True))


def _budget_text(attrs: dict[str, Any]) -> str | None:
    budget = attrs.get("budget_text") or attrs.get("budget")
    if isinstance(budget, dict):
        return ", ".join(f"{v} {k}" for k, v in budget.items())
    return budget
