"""Statistics for goals and experiments: pure functions on counts, no dependencies.

- `wilson`: the Wilson score interval for one proportion (Wilson 1927; Newcombe 1998a,
  method 3), without continuity correction.
- `newcombe`: the hybrid score interval for a difference of two independent proportions
  (Newcombe 1998b, method 10), built from the two Wilson intervals.
- `z_test`: the two-sided p-value of the two-proportion z-test with a pooled variance.
- `holm`: Holm-Bonferroni adjusted p-values (a family of tests at one level).

A proportion of nothing (n = 0) has no value: these functions return None for it.
"""
from __future__ import annotations

from math import sqrt
from statistics import NormalDist
from typing import Sequence

_NORMAL = NormalDist()


def z_for(confidence: float) -> float:
    """The two-sided critical value: 1.959963... for 0.95."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    return _NORMAL.inv_cdf(1 - (1 - confidence) / 2)


def _check(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= successes <= trials, got {k} of {n}")


def rate(k: int, n: int) -> float | None:
    _check(k, n)
    return k / n if n else None


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """(low, high) of the Wilson score interval for k successes in n trials; None if n = 0."""
    _check(k, n)
    if n == 0:
        return None
    z = z_for(confidence)
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # at k = 0 or k = n one bound is exactly 0 or 1; rounding must not push it past
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def newcombe(k1: int, n1: int, k2: int, n2: int,
             confidence: float = 0.95) -> tuple[float, float, float] | None:
    """(difference, low, high) for p1 - p2 by Newcombe's hybrid score method (method 10);
    None when either group is empty."""
    a, b = wilson(k1, n1, confidence), wilson(k2, n2, confidence)
    if a is None or b is None:
        return None
    p1, p2 = k1 / n1, k2 / n2
    (l1, u1), (l2, u2) = a, b
    d = p1 - p2
    low = d - sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def z_test(k1: int, n1: int, k2: int, n2: int) -> float | None:
    """Two-sided p-value of the pooled two-proportion z-test of p1 = p2; None when either
    group is empty. When both groups are all successes or all failures the test has no
    variance and nothing distinguishes them: p = 1."""
    _check(k1, n1)
    _check(k2, n2)
    if n1 == 0 or n2 == 0:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    se = sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (k1 / n1 - k2 / n2) / se
    return min(1.0, 2 * _NORMAL.cdf(-abs(z)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: a test is rejected at level
    alpha when its adjusted p-value is below alpha (the family-wise error rate is alpha)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
