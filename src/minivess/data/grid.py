"""Moving arrays between a volume's own voxel grid and the training grid of a resampled model.

When training resamples to ``target_spacing`` (``training.resampling``), a model only ever saw
volumes on that grid. Serving and evaluation therefore resample the input to it, predict, and
map the prediction back onto the input's own grid, where the original labels live. The mapping
here is a plain trilinear interpolation over the array extent (``torch.nn.functional.
interpolate``, ``align_corners=False``); MONAI's ``Spacingd`` used in training derives its
output shape from the affine and can differ from :func:`resampled_shape` by one voxel per axis,
which the model, a sliding-window predictor, does not notice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]
) -> tuple[int, int, int]:
    """Shape (x, y, z) of a volume of ``shape`` voxels at ``spacing`` once at ``target_spacing``.

    Example:
        >>> resampled_shape((64, 64, 10), (1.0, 1.0, 2.0), (1.0, 1.0, 1.0))
        (64, 64, 20)
    """
    out = [
        max(1, round(n * float(s) / float(t)))
        for n, s, t in zip(shape, spacing, target_spacing, strict=True)
    ]
    return out[0], out[1], out[2]


def to_shape(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resize of ``array`` ((x, y, z) or (C, x, y, z), float) to spatial ``shape``."""
    import torch
    import torch.nn.functional as F

    a = np.asarray(array, np.float32)
    spatial = a.shape[-3:]
    if tuple(spatial) == tuple(shape):
        return a
    t = torch.from_numpy(np.ascontiguousarray(a))
    t = t[None, None] if a.ndim == 3 else t[None]
    out = F.interpolate(t, size=tuple(int(n) for n in shape), mode="trilinear", align_corners=False)
    return (out[0, 0] if a.ndim == 3 else out[0]).numpy()


def needs_resampling(
    spacing: Sequence[float] | None, target_spacing: Sequence[float] | None, rtol: float = 1e-3
) -> bool:
    """True when a model trained at ``target_spacing`` must resample an input at ``spacing``."""
    if target_spacing is None or spacing is None:
        return False
    return not np.allclose(np.asarray(spacing, float), np.asarray(target_spacing, float), rtol=rtol)
