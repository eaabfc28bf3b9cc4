"""The intensity preprocessing applied before inference.

TEMPORARY: training's intensity normalisation transform is not committed yet. Serving must use
the exact same preprocessing as training; this module is the ONE place serving calls, and
:func:`preprocess_for_inference` is to be replaced by an import of training's transform as soon
as it lands (no other serving code normalises intensities).
"""

from __future__ import annotations

import numpy as np


def preprocess_for_inference(volume: np.ndarray) -> np.ndarray:
    """Z-score a (x, y, z) volume over all voxels; returns float32 of the same shape.

    A constant volume maps to zeros (no division by zero).
    """
    arr = np.asarray(volume, dtype=np.float32)
    mean = float(arr.mean(dtype=np.float64))
    std = float(arr.std(dtype=np.float64))
    return ((arr - mean) / (std if std > 0 else 1.0)).astype(np.float32, copy=False)
