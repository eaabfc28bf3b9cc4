"""Per-volume segmentation metrics on binary masks (x, y, z).

Dice, HD95 and surface Dice are MONAI's (``compute_dice``, ``compute_hausdorff_distance`` with
``percentile=95``, ``compute_surface_dice``); clDice (centreline Dice, Shit et al. 2021), which
MONAI only offers as a loss, is computed here from ``skimage.morphology.skeletonize``.
Distances are in the units of ``spacing`` (µm for MiniVess).

Empty masks (MetricsReloaded, Maier-Hein et al. 2024; nnU-Net marks the same cases NaN and drops
them from its means, which hides a missed volume, so a value is always returned here):

============================  ======  ======  ==============================================
case                          Dice,   HD95    why
                              clDice,
                              NSD
============================  ======  ======  ==============================================
label and prediction empty    1.0     0.0     a correct "no vessel" call is a perfect match
exactly one empty             0.0     worst   worst = the volume's diagonal in spacing units,
                                              the largest distance its field of view holds
============================  ======  ======  ==============================================

No volume is ever dropped from a mean: the tables show the ``n`` behind each one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

#: Surface-Dice tolerance, in spacing units (µm for MiniVess): about two xy voxels.
SURFACE_TOLERANCE = 2.0
METRIC_NAMES = ("dice", "cldice", "hd95", "surface_dice")
#: The values each metric can take (HD95: spacing units, unbounded above).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "dice": (0.0, 1.0), "cldice": (0.0, 1.0), "hd95": (0.0, float("inf")),
    "surface_dice": (0.0, 1.0),
}  # fmt: skip


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


def centreline(mask: np.ndarray) -> np.ndarray:
    """Skeleton of a binary mask (x, y, z) that keeps every connected component.

    ``skimage.morphology.skeletonize`` (Lee's 3D thinning) erases tubes of even width entirely
    (a 2×2 or 4×4 cross-section leaves no voxel), as thin capillaries can be. Fallback, per
    26-connected component whose skeleton came back empty: the ridge of its Euclidean distance
    transform (the voxels at its maximal distance from the background: the whole tube at width
    2, the central 2×2 core at width 4). A non-empty mask therefore always has a non-empty
    centreline, and identical masks always score clDice 1.
    """
    from scipy import ndimage
    from skimage.morphology import skeletonize

    m = np.asarray(mask, bool)
    skel = skeletonize(m).astype(bool)
    labels, n = ndimage.label(m, structure=np.ones((3,) * m.ndim, bool))
    if n == 0:
        return skel
    index = np.arange(1, n + 1)
    kept = ndimage.sum_labels(skel, labels, index) > 0
    if kept.all():
        return skel
    edt = ndimage.distance_transform_edt(np.pad(m, 1))[(slice(1, -1),) * m.ndim]
    ridge_height = np.asarray(ndimage.maximum(edt, labels, index))
    lost = np.concatenate([[False], ~kept])[labels]
    ridge = lost & (edt >= np.concatenate([[np.inf], ridge_height])[labels] - 1e-6)
    return skel | ridge


def cldice(pred: np.ndarray, label: np.ndarray) -> float:
    """Centreline Dice: harmonic mean of topology precision and sensitivity.

    ``Tprec = |skel(pred) ∩ label| / |skel(pred)|``,
    ``Tsens = |skel(label) ∩ pred| / |skel(label)|``, with ``skel`` = :func:`centreline`.
    Both masks empty gives 1.0; exactly one empty gives 0.0.
    """
    p, g = np.asarray(pred, bool), np.asarray(label, bool)
    if not p.any() and not g.any():
        return 1.0
    if not p.any() or not g.any():
        return 0.0
    sp, sg = centreline(p), centreline(g)
    tprec = (sp & g).sum() / max(sp.sum(), 1)
    tsens = (sg & p).sum() / max(sg.sum(), 1)
    if tprec + tsens == 0:
        return 0.0
    return float(2 * tprec * tsens / (tprec + tsens))


def worst_distance(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The largest distance inside a volume of ``shape`` voxels: its diagonal (spacing units)."""
    return float(np.linalg.norm([n * float(s) for n, s in zip(shape, spacing, strict=True)]))


def hd95(pred: np.ndarray, label: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance (spacing units).

    Both masks empty gives 0.0; exactly one empty gives :func:`worst_distance` (never NaN, so a
    missed volume counts against the mean instead of leaving it).
    """
    from monai.metrics import compute_hausdorff_distance

    p_any, g_any = bool(np.any(pred)), bool(np.any(label))
    if not p_any and not g_any:
        return 0.0
    if not p_any or not g_any:
        return worst_distance(np.shape(label), spacing)
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
