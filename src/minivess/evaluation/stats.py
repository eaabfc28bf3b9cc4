"""Bootstrap confidence intervals across volumes (percentile method, fixed seed)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

N_BOOTSTRAP = 2000
CI_LEVEL = 0.95


class CI(BaseModel):
    """A mean and its bootstrap confidence interval; ``n`` finite values went in."""

    mean: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 3) -> str:
        """``0.812 [0.790, 0.834]``."""
        if self.n == 0:
            return "n/a"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def bootstrap_ci(
    values: Sequence[float], n_boot: int = N_BOOTSTRAP, level: float = CI_LEVEL, seed: int = 0
) -> CI:
    """Mean of the finite ``values`` with a percentile bootstrap CI (NaN/inf are dropped).

    Example:
        >>> bootstrap_ci([1.0, 1.0, 1.0]).fmt()
        '1.000 [1.000, 1.000]'
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return CI(mean=float("nan"), lo=float("nan"), hi=float("nan"), n=0)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return CI(mean=float(v.mean()), lo=float(lo), hi=float(hi), n=int(v.size))


def paired_difference_ci(
    a: Sequence[float], b: Sequence[float], n_boot: int = N_BOOTSTRAP, seed: int = 0
) -> CI:
    """Bootstrap CI of ``mean(a - b)`` over volumes where both are finite (paired by volume)."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return bootstrap_ci((x - y)[keep], n_boot=n_boot, seed=seed)
