"""--keep-recipe's promise, checked: the best's validation curve against the baseline's.

A study that searches only systems knobs promises the same training, faster. Confirmation runs
the best and the baseline in pairs that share a seed; with the same recipe and the same seed the
two curves differ only by numerics (bf16, the order of a parallel reduction). The yardstick is
what reseeding the baseline moves its own curve by: the spread of the baseline's re-runs, at the
same validations. The curves agree when the largest gap between a pair's two curves is no larger
than the largest spread of the baseline's re-runs over the same validations.
"""

from __future__ import annotations

from typing import Any

# the least re-runs of the baseline whose spread measures the noise
MIN_RUNS = 2


def curve_values(result: dict[str, Any]) -> list[float | None]:
    """The metric at each validation of a run's result."""
    return [point.get("value") for point in result.get("curve", [])]


def recipe_check(runs: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Whether the confirmation pairs' curves agree within the baseline's run-to-run noise (see
    the module docstring); `agree` None when there is too little to tell, with `why`."""
    pairs = [(r["best"].get("curve") or [], r["baseline"].get("curve") or []) for r in runs
             if r.get("best", {}).get("curve") and r.get("baseline", {}).get("curve")]
    baselines = [base for _, base in pairs]
    length = min((len(c) for c in baselines), default=0)
    if len(baselines) < MIN_RUNS or length == 0:
        return {"agree": None, "metric": metric, "why": f"it takes {MIN_RUNS} confirmation pairs with validations "
                                                        f"(--confirm {MIN_RUNS} or more)"}
    gaps = [abs(best[k] - base[k]) for best, base in pairs for k in range(min(len(best), length))
            if best[k] is not None and base[k] is not None]
    spreads = []
    for k in range(length):
        values = [c[k] for c in baselines if c[k] is not None]
        if len(values) >= MIN_RUNS:
            spreads.append(max(values) - min(values))
    if not gaps or not spreads:
        return {"agree": None, "metric": metric, "why": "the runs gave no validation values to compare"}
    max_gap, noise = max(gaps), max(spreads)
    return {"agree": max_gap <= noise, "metric": metric, "max_gap": max_gap, "noise": noise,
            "pairs": len(pairs), "validations": length}
