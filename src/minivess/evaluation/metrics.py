"""Per-volume segmentation metrics on binary masks (x, y, z).

Dice, HD95 and surface Dice are MONAI's (``compute_dice``, ``compute_hausdorff_distance`` with
``percentile=95``, ``compute_surface_dice``); clDice (centreline Dice, Shit et al. 2021), which
MONAI only offers as a loss, is computed here from ``skimage.morphology.skeletonize``.
Distances are in the units of ``spacing`` (µm for MiniVess).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

#: Surface-Dice tolerance, in spacing units (µm for MiniVess): about two xy voxels.
SURFACE_TOLERANCE = 2.0
METRIC_NAMES = ("dice", "cldice", "hd95", "surface_dice")


def _onehot(mask: np.ndarray):  # -> torch.Tensor (1, 2, x, y, z)
    import torch

    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    return torch.stack([~m, m]).unsqueeze(0).float()


def dice(pred: np.ndarray, label: np.ndarray) -> float:
    """Foreground Dice of two binary masks; 1.0 when both are empty."""
    from monai.metrics import compute_dice

    value = compute_dice(
        _onehot(pred), _onehot(label), include_background=False, ignore_empty=False
    )
    return float(value.item())


def cldice(pred: np.ndarray, label: np.ndarray) -> float:
    """Centreline Dice: harmonic mean of topology precision and sensitivity.

    ``Tprec = |skel(pred) ∩ label| / |skel(pred)|``,
    ``Tsens = |skel(label) ∩ pred| / |skel(label)|``.
    Both masks empty gives 1.0; exactly one empty gives 0.0.
    """
    from skimage.morphology import skeletonize

    p, g = np.asarray(pred, bool), np.asarray(label, bool)
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    sp, sg = skeletonize(p), skeletonize(g)
    tprec = (sp & g).sum() / max(sp.sum(), 1)
    tsens = (sg & p).sum() / max(sg.sum(), 1)
    if tprec + tsens == 0:
        return 0.0
    return float(2 * tprec * tsens / (tprec + tsens))


def hd95(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance (spacing units); NaN if a mask is empty."""
    from monai.metrics import compute_hausdorff_distance

    if not np.any(pred) or not np.any(label):
        return float("nan")
    with warnings.catch_warnings():  # MONAI 1.6 warns about its own internal argument
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(
            _onehot(pred), _onehot(label), percentile=95, spacing=list(map(float, spacing))
        )
    return float(value.item())


def surface_dice(
    pred: np.ndarray,
    label: np.ndarray,
    spacing: Sequence[float],
    tolerance: float = SURFACE_TOLERANCE,
) -> float:
    """Normalised surface Dice at ``tolerance`` (spacing units); 1.0 both empty, 0.0 one empty."""
    from monai.metrics import compute_surface_dice

    p_any, g_any = bool(np.any(pred)), bool(np.any(label))
    if not p_any and not g_any:
        return 1.0
    if not p_any or not g_any:
        return 0.0
    with warnings.catch_warnings():  # MONAI 1.6 warns about its own internal argument
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_surface_dice(
            _onehot(pred), _onehot(label), [tolerance], spacing=list(map(float, spacing))
        )
    return float(value.item())


def volume_metrics(
    pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]
) -> dict[str, float]:
    """All of :data:`METRIC_NAMES` for one volume."""
    return {
        "dice": dice(pred, label),
        "cldice": cldice(pred, label),
        "hd95": hd95(pred, label, spacing),
        "surface_dice": surface_dice(pred, label, spacing),
    }
