"""engine.stats against published values (Newcombe 1998) and against scipy (tests only)."""
from __future__ import annotations

import itertools

import pytest
from scipy import stats as sp

from engine import stats


# Newcombe RG (1998a), Two-sided confidence intervals for the single proportion, Statistics in
# Medicine 17:857-872, Table I, method 3 (score interval without continuity correction).
@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_published(k: int, n: int, low: float, high: float) -> None:
    ci = stats.wilson(k, n)
    assert ci is not None
    assert ci[0] == pytest.approx(low, abs=5e-5) and ci[1] == pytest.approx(high, abs=5e-5)


# Newcombe RG (1998b), Interval estimation for the difference between independent proportions,
# Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score, no correction).
@pytest.mark.parametrize("k1, n1, k2, n2, low, high", [
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0),
    (10, 10, 0, 10, 0.6075, 1.0),
])
def test_newcombe_published(k1: int, n1: int, k2: int, n2: int, low: float,
                            high: float) -> None:
    got = stats.newcombe(k1, n1, k2, n2)
    assert got is not None
    d, lo, hi = got
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


CASES = [(0, 1), (1, 1), (0, 7), (7, 7), (3, 10), (1, 263), (81, 263), (500, 1000),
         (999, 1000), (12, 45_000)]


@pytest.mark.parametrize("k, n", CASES)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(k: int, n: int, confidence: float) -> None:
    ref = sp.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    ci = stats.wilson(k, n, confidence)
    assert ci is not None
    assert ci[0] == pytest.approx(ref.low, abs=1e-12)
    assert ci[1] == pytest.approx(ref.high, abs=1e-12)


def _z_test_scipy(k1: int, n1: int, k2: int, n2: int) -> float:
    pooled = (k1 + k2) / (n1 + n2)
    se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)) ** 0.5
    return float(2 * sp.norm.sf(abs((k1 / n1 - k2 / n2) / se)))


@pytest.mark.parametrize("a, b", [((11, 45), (1, 12)), ((56, 70), (48, 80)),
                                  ((120, 1000), (100, 1000)), ((0, 5), (5, 5)),
                                  ((3000, 10_000), (2850, 10_000))])
def test_z_test_matches_scipy(a: tuple[int, int], b: tuple[int, int]) -> None:
    p = stats.z_test(*a, *b)
    assert p == pytest.approx(_z_test_scipy(*a, *b), rel=1e-9, abs=1e-15)
    assert p == stats.z_test(*b, *a)  # two-sided


def test_z_test_against_chi_square() -> None:
    """The pooled z-test is the uncorrected chi-square test of the 2x2 table (z^2 = chi^2)."""
    for (k1, n1), (k2, n2) in itertools.product([(11, 45), (30, 90)], [(1, 12), (40, 80)]):
        table = [[k1, n1 - k1], [k2, n2 - k2]]
        chi2 = sp.chi2_contingency(table, correction=False)
        assert stats.z_test(k1, n1, k2, n2) == pytest.approx(chi2.pvalue, rel=1e-9)


def test_edge_cases() -> None:
    assert stats.wilson(0, 0) is None and stats.rate(0, 0) is None
    assert stats.wilson(0, 5) == (0.0, pytest.approx(0.4345, abs=5e-5))
    low, high = stats.wilson(5, 5) or (None, None)
    assert high == 1.0 and low == pytest.approx(0.5655, abs=5e-5)
    assert stats.newcombe(1, 2, 0, 0) is None and stats.newcombe(0, 0, 1, 2) is None
    assert stats.z_test(0, 0, 1, 2) is None
    assert stats.z_test(0, 10, 0, 20) == 1.0 and stats.z_test(4, 4, 9, 9) == 1.0
    with pytest.raises(ValueError):
        stats.wilson(3, 2)
    with pytest.raises(ValueError):
        stats.z_for(1.0)


def test_holm() -> None:
    # Holm (1979) step-down: sorted p-values times m, m-1, ... made monotone, capped at 1
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == [1.0, 1.0]
    assert stats.holm([]) == []
    assert stats.holm([0.02]) == [0.02]
