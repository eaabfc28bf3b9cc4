"""Coverage of the mean's CI by simulation (seeded, bounded): the interval must hold its 95%.

Values are drawn from Beta(8, 2) (mean 0.8, skewed and bounded like per-volume Dice). The
percentile bootstrap the project used before is simulated alongside, to show the test tells a
good interval from the one that covered 72% at n = 3.
"""

from __future__ import annotations

import numpy as np
import pytest

from minivess.evaluation.stats import BCA_MIN_N, CIMethod, bootstrap_ci, paired_difference_ci

A, B = 8.0, 2.0
MEAN = A / (A + B)


def _percentile_ci(v: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    means = v[rng.integers(0, v.size, size=(2000, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


@pytest.mark.parametrize(("n", "reps"), [(3, 1000), (5, 1000), (10, 600), (BCA_MIN_N + 5, 300)])
def test_ci_covers_the_true_mean_at_its_level(n: int, reps: int) -> None:
    rng = np.random.default_rng(n)
    hits = 0
    method = None
    for r in range(reps):
        ci = bootstrap_ci(rng.beta(A, B, n), seed=r)
        hits += ci.lo <= MEAN <= ci.hi
        method = ci.method
    coverage = hits / reps
    assert method is (CIMethod.T if n < BCA_MIN_N else CIMethod.BCA)
    # 95% nominal; the bounds allow ~3 standard errors of the simulation
    assert 0.91 <= coverage <= 0.985, coverage


def test_percentile_bootstrap_undercovers_at_three_volumes() -> None:
    """What the old default did: the simulation must be able to see it fail."""
    rng = np.random.default_rng(3)
    reps = 1000
    hits = sum(
        lo <= MEAN <= hi for lo, hi in (_percentile_ci(rng.beta(A, B, 3), rng) for _ in range(reps))
    )
    assert hits / reps < 0.85


def test_ci_reports_the_n_behind_the_mean() -> None:
    ci = bootstrap_ci([1, 1, 1, 1, 1, float("nan")])
    assert (ci.n, ci.n_total) == (5, 6)
    assert ci.fmt() == "1.000 [1.000, 1.000] n=5 of 6"
    one = bootstrap_ci([0.7])
    assert one.n == 1 and np.isnan(one.lo) and "no CI" in one.fmt()
    assert bootstrap_ci([]).fmt() == "n/a (n=0)"


def test_a_t_interval_stays_inside_the_metrics_range() -> None:
    """Near 1, mean ± t·s/√n passes 1 (stop 26's table printed surface Dice [0.906, 1.019]): an
    interval outside the values a metric can take says nothing there, so it is cut to the range;
    the mean and the side inside the range are the t-interval's own."""
    values = [1.0, 1.0, 1.0, 0.62, 1.0, 0.97]
    free = bootstrap_ci(values)
    assert free.hi > 1.0  # the uncut interval leaves [0, 1]
    cut = bootstrap_ci(values, bounds=(0.0, 1.0))
    assert cut.hi == 1.0 and cut.lo == free.lo and cut.mean == free.mean
    assert bootstrap_ci([0.0, 0.0, 0.4], bounds=(0.0, float("inf"))).lo == 0.0
    with pytest.raises(ValueError, match="bounds"):
        bootstrap_ci(values, bounds=(1.0, 0.0))


def test_a_paired_difference_stays_inside_the_differences_range() -> None:
    a, b = [1.0, 1.0, 0.05, 1.0], [0.0, 0.0, 0.0, 0.0]
    assert paired_difference_ci(a, b).hi > 1.0
    cut = paired_difference_ci(a, b, metric_bounds=(0.0, 1.0))
    assert cut.hi == 1.0 and cut.lo == paired_difference_ci(a, b).lo


def test_every_value_of_the_report_has_its_range() -> None:
    from minivess.evaluation.report import VALUE_NAMES, VALUE_RANGES

    assert set(VALUE_RANGES) == set(VALUE_NAMES)
    assert VALUE_RANGES["dice"] == (0.0, 1.0) and VALUE_RANGES["hd95"][0] == 0.0
