"""A distribution-free interval for the median of paired speedups (torch-free).

Confirmation re-runs best and baseline in a few paired rounds; their ratios are a small sample
of unknown shape. The interval [x_(k), x_(n+1-k)] of the sorted ratios covers the true median
with probability 1 - 2 * P(Binomial(n, 1/2) < k), exactly, whatever the distribution (the
interval a sign test inverts to). k is the largest that keeps at least `CONFIDENCE`; a sample too
small for it gets [min, max] and says how much that covers (3 pairs: 75%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONFIDENCE = 0.9
# The least coverage that can confirm anything: 3 pairs (all faster). One pair covers nothing
# (0%) and two 50%: a speedup seen once or twice is not confirmed, however large.
MIN_COVERAGE = 0.75


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    coverage: float  # the probability the interval covers the true median

    def excludes(self, value: float) -> bool:
        return not self.low <= value <= self.high


def _below(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) < k)."""
    return sum(math.comb(n, i) for i in range(k)) / 2**n


def median_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval | None:
    """The order-statistic interval for the median of `values`; None without values."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _below(k + 1, n) >= confidence:
        k += 1
    return Interval(ordered[k - 1], ordered[n - k], 1 - 2 * _below(k, n))
