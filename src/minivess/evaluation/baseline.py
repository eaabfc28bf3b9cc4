"""The trivial baseline every model must beat: one intensity threshold learned on training data.

The threshold applies to the normalised intensity the networks see (zero mean, unit std per
volume, :func:`minivess.training.transforms.eval_transforms`), so one number transfers across
volumes of different brightness. It is the value that maximises the mean per-volume foreground
Dice over the training volumes, searched on a fine grid of candidate values; a volume's Dice at
every candidate comes from two cumulative histograms (foreground and all voxels), one pass per
volume, so the search costs O(voxels).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pydantic import BaseModel, Field

#: Name of the baseline row in the comparison table.
BASELINE_NAME = "baseline-threshold"
#: Candidate thresholds, in units of the per-volume intensity std.
CANDIDATES = np.linspace(-3.0, 8.0, 1101)


class ThresholdBaseline(BaseModel):
    """``mask = normalised intensity > threshold``."""

    threshold: float = Field(description="on the per-volume normalised intensity (std units)")
    train_dice: float = Field(description="mean per-volume Dice on the training volumes")
    train_volumes: list[str]

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Binary mask (x, y, z) of a normalised image (x, y, z)."""
        return np.asarray(image) > self.threshold


def _dice_per_candidate(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Foreground Dice of ``image > c`` for every ``c`` in :data:`CANDIDATES`."""
    x = np.asarray(image, np.float64).ravel()
    y = np.asarray(label, bool).ravel()
    # counts strictly above each candidate = total - counts at or below
    idx = np.searchsorted(CANDIDATES, x, side="left")  # x > CANDIDATES[j] <=> idx > j
    all_hist = np.bincount(idx, minlength=CANDIDATES.size + 1)
    fg_hist = np.bincount(idx[y], minlength=CANDIDATES.size + 1)
    above_all = all_hist[::-1].cumsum()[::-1][1:]  # sum over idx > j
    above_fg = fg_hist[::-1].cumsum()[::-1][1:]
    n_fg = int(y.sum())
    denom = above_all + n_fg
    return np.where(denom > 0, 2.0 * above_fg / np.maximum(denom, 1), 1.0)


def learn_threshold(volumes: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> ThresholdBaseline:
    """The threshold maximising mean per-volume Dice over ``(name, image, label)`` volumes.

    Raises:
        ValueError: when ``volumes`` is empty.
    """
    names, total = [], None
    for name, image, label in volumes:
        d = _dice_per_candidate(image, label)
        total = d if total is None else total + d
        names.append(name)
    if total is None:
        raise ValueError("learn_threshold: no training volume; the baseline needs at least one.")
    mean = total / len(names)
    best = int(np.argmax(mean))
    return ThresholdBaseline(
        threshold=float(CANDIDATES[best]), train_dice=float(mean[best]), train_volumes=names
    )
