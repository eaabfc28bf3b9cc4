"""Calibration of the foreground probability: per-volume ECE on foreground-relevant voxels.

Voxel-level ECE over a whole volume is dominated by the easy background (97% of a MiniVess
volume), where any model is confidently right, so it says little about the vessels. Following
the segmentation-calibration literature (Mehrtash et al., IEEE TMI 2020: ECE per volume inside
the region around the structure), ECE here is

* computed **per volume**, then averaged over volumes (with a CI and the ``n`` behind it);
* on the **foreground-relevant voxels** only: the label's foreground united with the predicted
  foreground (probability ≥ 0.5), dilated by :data:`RELEVANT_MARGIN` voxels (3×3×3 element), so
  that missed vessels, false vessels and their boundaries count, and the far background does not;
* with :data:`N_BINS` equal-width bins: ``ECE = Σ_b (n_b / N) · |mean label_b − mean prob_b|``.

A volume with no foreground in label or prediction has no relevant voxel: its ECE is NaN and
the table shows it in ``n`` ("n=5 of 6"). The reliability diagram pools the relevant voxels of
all volumes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_BINS = 10
#: Dilation (voxels, 26-connected) of the label ∪ prediction region that ECE is computed on.
RELEVANT_MARGIN = 2
#: Probability at and above which a voxel is predicted foreground.
FOREGROUND_THRESHOLD = 0.5


def relevant_voxels(
    prob: np.ndarray, label: np.ndarray, margin: int = RELEVANT_MARGIN
) -> np.ndarray:
    """Boolean mask (x, y, z) of the foreground-relevant voxels (see the module docstring)."""
    from scipy import ndimage

    region = np.asarray(label, bool) | (np.asarray(prob) >= FOREGROUND_THRESHOLD)
    if margin > 0 and region.any():
        region = ndimage.binary_dilation(
            region, structure=np.ones((3,) * region.ndim, bool), iterations=margin
        )
    return region


def expected_calibration_error(prob: np.ndarray, label: np.ndarray, n_bins: int = N_BINS) -> float:
    """Equal-width-bin ECE of probabilities ``prob`` against labels in {0, 1}; NaN if empty."""
    bins = ReliabilityBins(n_bins)
    bins.add(prob, label)
    return bins.ece()


def volume_ece(prob: np.ndarray, label: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE of one volume on its foreground-relevant voxels; NaN when there are none."""
    keep = relevant_voxels(prob, label)
    return expected_calibration_error(np.asarray(prob)[keep], np.asarray(label)[keep], n_bins)


class ReliabilityBins:
    """Accumulates (count, Σ probability, Σ label) per probability bin, volume by volume."""

    def __init__(self, n_bins: int = N_BINS) -> None:
        self.n_bins = n_bins
        self.count = np.zeros(n_bins, np.int64)
        self.sum_p = np.zeros(n_bins, np.float64)
        self.sum_y = np.zeros(n_bins, np.float64)

    def add(self, prob: np.ndarray, label: np.ndarray) -> None:
        """Add voxels: ``prob`` foreground probability in [0, 1], ``label`` in {0, 1}."""
        p = np.clip(np.asarray(prob, np.float64).ravel(), 0.0, 1.0)
        y = np.asarray(label, np.float64).ravel()
        idx = np.minimum((p * self.n_bins).astype(np.int64), self.n_bins - 1)
        self.count += np.bincount(idx, minlength=self.n_bins)
        self.sum_p += np.bincount(idx, weights=p, minlength=self.n_bins)
        self.sum_y += np.bincount(idx, weights=y, minlength=self.n_bins)

    def ece(self) -> float:
        """Expected calibration error: Σ_b (n_b / N) · |mean label_b − mean prob_b|."""
        n = self.count.sum()
        if n == 0:
            return float("nan")
        nz = self.count > 0
        gap = np.abs(self.sum_y[nz] / self.count[nz] - self.sum_p[nz] / self.count[nz])
        return float((self.count[nz] / n * gap).sum())

    def plot(self, path: Path, title: str) -> Path:
        """Reliability diagram (observed foreground frequency vs predicted probability)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        nz = self.count > 0
        conf = self.sum_p[nz] / self.count[nz]
        acc = self.sum_y[nz] / self.count[nz]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
        ax.plot(conf, acc, "o-", label=f"model (ECE {self.ece():.4f})")
        ax.set_xlabel("predicted foreground probability")
        ax.set_ylabel("observed foreground frequency")
        ax.set_title(title)
        ax.legend(loc="upper left")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path
