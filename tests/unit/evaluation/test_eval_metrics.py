"""Metrics, CIs, calibration and ensembles on generated masks."""

from __future__ import annotations

import numpy as np
import pytest

from minivess.evaluation.calibration import ReliabilityBins
from minivess.evaluation.ensemble import majority_vote, mean_probability, model_soup
from minivess.evaluation.metrics import cldice, dice, hd95, surface_dice, volume_metrics
from minivess.evaluation.stats import bootstrap_ci, paired_difference_ci


def _tube(shape=(24, 24, 8), y0=12, gap: tuple[int, int] | None = None) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[2:22, y0 - 1 : y0 + 2, 3:6] = True
    if gap is not None:
        m[gap[0] : gap[1]] = False
    return m


def test_dice_identity_and_disjoint() -> None:
    t = _tube()
    assert dice(t, t) == pytest.approx(1.0)
    assert dice(t, ~t) == pytest.approx(0.0)
    assert dice(np.zeros_like(t), np.zeros_like(t)) == 1.0


def test_cldice_penalises_a_broken_vessel_more_than_dice() -> None:
    t = _tube()
    broken = _tube(gap=(10, 13))
    assert cldice(t, t) == pytest.approx(1.0)
    assert cldice(broken, t) < 1.0
    assert cldice(np.zeros_like(t), t) == 0.0


def test_hd95_measures_a_shift_in_spacing_units() -> None:
    t = _tube(y0=10)
    shifted = _tube(y0=13)  # 3 voxels along y
    assert hd95(t, t, (1.0, 1.0, 1.0)) == pytest.approx(0.0)
    assert hd95(shifted, t, (1.0, 1.0, 1.0)) == pytest.approx(3.0, abs=0.01)
    assert hd95(shifted, t, (1.0, 2.0, 1.0)) == pytest.approx(6.0, abs=0.01)
    assert np.isnan(hd95(np.zeros_like(t), t, (1, 1, 1)))


def test_surface_dice_tolerance() -> None:
    t = _tube(y0=10)
    shifted = _tube(y0=11)
    assert surface_dice(t, t, (1, 1, 1)) == pytest.approx(1.0)
    assert surface_dice(shifted, t, (1, 1, 1), tolerance=2.0) == pytest.approx(1.0)
    assert surface_dice(shifted, t, (1, 1, 1), tolerance=0.5) < 1.0


def test_volume_metrics_has_every_metric() -> None:
    t = _tube()
    assert set(volume_metrics(t, t, (1, 1, 1))) == {"dice", "cldice", "hd95", "surface_dice"}


def test_bootstrap_ci_brackets_the_mean_and_drops_nan() -> None:
    rng = np.random.default_rng(0)
    vals = [*rng.normal(0.8, 0.05, 30), float("nan")]
    ci = bootstrap_ci(vals)
    assert ci.n == 30
    assert ci.lo < ci.mean < ci.hi
    assert ci.hi - ci.lo < 0.1
    assert bootstrap_ci([0.5] * 5).fmt() == "0.500 [0.500, 0.500]"


def test_paired_difference_detects_a_consistent_gain() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 0.9, 20)
    diff = paired_difference_ci(base + 0.02, base)
    assert diff.lo > 0
    assert diff.mean == pytest.approx(0.02)


def test_ece_zero_when_calibrated_positive_when_overconfident() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, 200_000)
    y = rng.uniform(0, 1, p.size) < p  # labels drawn with probability p: calibrated
    good = ReliabilityBins()
    good.add(p, y)
    over = ReliabilityBins()
    over.add(np.where(p > 0.5, 1.0, 0.0), y)  # hard 0/1 confidence
    assert good.ece() < 0.01
    assert over.ece() > 0.2


def test_mean_probability_and_majority_vote() -> None:
    a, b, c = (np.array([0.9, 0.2, 0.6]), np.array([0.7, 0.4, 0.2]), np.array([0.8, 0.6, 0.1]))
    assert np.allclose(mean_probability([a, b, c]), [0.8, 0.4, 0.3])
    mask, frac = majority_vote([a > 0.5, b > 0.5, c > 0.5])
    assert mask.tolist() == [True, False, False]
    assert np.allclose(frac, [1.0, 1 / 3, 1 / 3])


def test_model_soup_averages_float_weights() -> None:
    import torch

    s1 = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    s2 = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(7)}
    soup = model_soup([s1, s2])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0]))
    assert int(soup["n"]) == 5
