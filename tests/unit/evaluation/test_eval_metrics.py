"""Metrics, CIs, calibration and ensembles on generated masks."""

from __future__ import annotations

import numpy as np
import pytest

from minivess.evaluation.calibration import ReliabilityBins
from minivess.evaluation.ensemble import majority_vote, mean_probability, model_soup
from minivess.evaluation.metrics import (
    centreline,
    cldice,
    dice,
    hd95,
    surface_dice,
    volume_metrics,
)
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


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cldice_of_identical_thin_tubes_is_one(width: int, axis: int) -> None:
    """Lee's 3D thinning erases even-width tubes; the centreline keeps every component."""
    m = np.zeros((30, 30, 30), bool)
    sl = [slice(10, 10 + width)] * 3
    sl[axis] = slice(2, 28)
    m[tuple(sl)] = True
    assert centreline(m).any()
    assert centreline(m).sum() < m.sum() or width <= 2
    assert not (centreline(m) & ~m).any()
    assert cldice(m, m) == pytest.approx(1.0)
    shifted = np.roll(m, 6, axis=(axis + 1) % 3)  # disjoint tube of the same shape
    assert cldice(shifted, m) == 0.0


def test_centreline_fallback_leaves_thinnable_components_alone() -> None:
    from skimage.morphology import skeletonize

    odd = np.zeros((30, 20, 20), bool)
    odd[2:28, 5:8, 5:8] = True  # width 3: skimage's skeleton survives
    even = np.zeros_like(odd)
    even[2:28, 13:15, 13:15] = True  # width 2: erased by skimage
    both = odd | even
    c = centreline(both)
    assert (c & odd).sum() == skeletonize(odd).sum()
    assert (c & even).sum() > 0


def test_hd95_measures_a_shift_in_spacing_units() -> None:
    t = _tube(y0=10)
    shifted = _tube(y0=13)  # 3 voxels along y
    assert hd95(t, t, (1.0, 1.0, 1.0)) == pytest.approx(0.0)
    assert hd95(shifted, t, (1.0, 1.0, 1.0)) == pytest.approx(3.0, abs=0.01)
    assert hd95(shifted, t, (1.0, 2.0, 1.0)) == pytest.approx(6.0, abs=0.01)


def test_hd95_empty_masks_never_vanish_from_a_mean() -> None:
    t = _tube()
    empty = np.zeros_like(t)
    worst = hd95(empty, t, (1.0, 1.0, 2.0))
    assert worst == pytest.approx(np.sqrt(24**2 + 24**2 + 16**2))  # the volume's diagonal
    assert hd95(t, empty, (1.0, 1.0, 2.0)) == worst
    assert hd95(empty, empty, (1.0, 1.0, 2.0)) == 0.0
    assert hd95(_tube(y0=13), t, (1, 1, 1)) < worst  # a near miss beats a missed volume


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
    assert ci.n_total == 31
    assert bootstrap_ci([0.5] * 5).fmt() == "0.500 [0.500, 0.500] n=5"


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
