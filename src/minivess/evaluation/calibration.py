"""Calibration of the foreground probability: streaming reliability bins, ECE, diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_BINS = 10


class ReliabilityBins:
    """Accumulates (count, Σ probability, Σ label) per probability bin, volume by volume."""

    def __init__(self, n_bins: int = N_BINS) -> None:
        self.n_bins = n_bins
        self.count = np.zeros(n_bins, np.int64)
        self.sum_p = np.zeros(n_bins, np.float64)
        self.sum_y = np.zeros(n_bins, np.float64)

    def add(self, prob: np.ndarray, label: np.ndarray) -> None:
        """Add one volume: ``prob`` foreground probability in [0, 1], ``label`` in {0, 1}."""
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
