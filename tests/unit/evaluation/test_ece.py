"""ECE: equal-width bins checked against scikit-learn's calibration_curve; per-volume ECE on the
foreground-relevant voxels is not washed out by easy background."""

from __future__ import annotations

import numpy as np
import pytest

from minivess.evaluation.calibration import (
    N_BINS,
    expected_calibration_error,
    relevant_voxels,
    volume_ece,
)


def _sklearn_ece(prob: np.ndarray, label: np.ndarray, n_bins: int) -> float:
    """The reference: sklearn's reliability curve, weighted by bin counts."""
    from sklearn.calibration import calibration_curve

    frac_pos, mean_pred = calibration_curve(label, prob, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.histogram(prob, bins=edges)[0]
    counts = counts[counts > 0]
    return float(np.sum(counts / prob.size * np.abs(frac_pos - mean_pred)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_sklearn_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, 50_000)
    y = rng.uniform(size=p.size) < np.clip(p * 1.3 - 0.1, 0, 1)  # miscalibrated on purpose
    ours = expected_calibration_error(p, y, N_BINS)
    assert ours == pytest.approx(_sklearn_ece(p, y.astype(int), N_BINS), rel=1e-9, abs=1e-12)
    assert ours > 0.02


def _volume(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A vessel whose probabilities are overconfident (0.9 where only half is vessel)."""
    label = np.zeros((64, 64, 16), bool)
    label[20:44, 30:34, 6:10] = rng.uniform(size=(24, 4, 4)) < 0.5
    prob = np.full(label.shape, 0.001)
    prob[20:44, 30:34, 6:10] = 0.9
    return prob, label


def test_volume_ece_is_not_dominated_by_background() -> None:
    prob, label = _volume(np.random.default_rng(0))
    whole = expected_calibration_error(prob, label)
    relevant = volume_ece(prob, label)
    assert whole < 0.01  # 99.8% easy background hides the overconfident vessel
    assert relevant > 0.05 and relevant > 10 * whole  # on the relevant voxels it shows
    region = relevant_voxels(prob, label)
    assert region[label].all() and region[prob >= 0.5].all()
    assert region.sum() < label.size / 10


def test_volume_ece_without_any_foreground_is_nan() -> None:
    empty = np.zeros((8, 8, 4))
    assert np.isnan(volume_ece(empty + 0.01, empty.astype(bool)))
