"""MONAI dictionary transforms of the training, validation and inference pipelines.

Volumes load at native resolution; resampling (``Spacingd``) runs only when the config enables
it. Intensities are normalised per volume (zero mean, unit std). Volumes smaller than the patch
are zero-padded (after normalisation, so the pad equals the volume mean), which the planner
lists in ``plan.padded_volumes``. Random crops are ``RandCropByPosNegLabeld`` with the plan's
patch; augmentation is light (flips, xy quarter turns when the patch is square in xy,
intensity scale/shift). Crop centres come from foreground/background candidates computed once
per volume and cached (:class:`FgBgIndicesd`).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from monai.transforms import MapTransform, Transform

from minivess.keys import Keys
from minivess.training.config import samples_per_volume

if TYPE_CHECKING:
    from monai.transforms import Compose

    from minivess.planning.plan import TrainingPlan
    from minivess.training.config import ResamplingConfig, TrainConfig

IMAGE_LABEL = [Keys.IMAGE.value, Keys.LABEL.value]
#: Keys of the cached crop-centre candidates (flattened voxel indices of the padded label).
FG_INDICES, BG_INDICES = "fg_indices", "bg_indices"
#: Background crop-centre candidates kept per volume (a fixed random subset of the background).
MAX_BACKGROUND_CANDIDATES = 200_000


class FgBgIndices(Transform):
    """Crop-centre candidates of a binary label: all foreground voxels, a background subset.

    ``label``: (1, x, y, z) or (x, y, z) array/tensor in {0, 1}. Returns ``(fg, bg)``, flattened
    int64 indices into the spatial shape, the form ``RandCropByPosNegLabeld`` accepts as
    ``fg_indices_key`` / ``bg_indices_key``. Computed once per volume (in the cache), it saves
    the full-volume ``nonzero`` that ``RandCropByPosNegLabeld`` otherwise runs on every draw.
    The background is subsampled to ``max_background`` voxels with a fixed seed, so the cached
    content is deterministic; foreground is kept whole (vessels are a few % of a volume).

    Example:
        >>> import numpy as np
        >>> fg, bg = FgBgIndices(max_background=2)(np.array([[[[0, 1, 0, 0]]]]))
        >>> fg.tolist(), len(bg) <= 3
        ([1], True)
    """

    def __init__(self, max_background: int = MAX_BACKGROUND_CANDIDATES, seed: int = 0) -> None:
        self.max_background = max_background
        self.seed = seed

    def __call__(self, label):  # -> tuple[np.ndarray, np.ndarray]
        import numpy as np

        arr = np.asarray(label.cpu() if hasattr(label, "cpu") else label)
        mask = (arr[0] if arr.ndim == 4 else arr).ravel() > 0
        fg = np.flatnonzero(mask)
        bg = np.flatnonzero(~mask)
        if bg.size > self.max_background:
            keep = np.random.default_rng(self.seed).random(bg.size) < self.max_background / bg.size
            bg = bg[keep]
        return fg, bg


class FgBgIndicesd(MapTransform):
    """Dictionary form of :class:`FgBgIndices`: adds ``fg_indices`` / ``bg_indices``.

    A deterministic MONAI ``Transform``, so CacheDataset caches its output.
    """

    def __init__(self, label_key: str = Keys.LABEL.value, **kwargs) -> None:
        super().__init__(keys=[label_key])
        self.label_key = label_key
        self.op = FgBgIndices(**kwargs)

    def __call__(self, data: dict) -> dict:
        out = dict(data)
        out[FG_INDICES], out[BG_INDICES] = self.op(data[self.label_key])
        return out


class IntensityStepsd(MapTransform):
    """:data:`minivess.data.intensity.INTENSITY_STEPS` on ``keys``, in order: the steps serving
    runs too (:mod:`minivess.serving.preprocess`)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from minivess.data.intensity import INTENSITY_STEPS

        d = dict(data)
        for key in self.key_iterator(d):
            for step in INTENSITY_STEPS:
                d[key] = step(d[key])
        return d


def load_transforms(resampling: ResamplingConfig, with_label: bool = True) -> list:
    """Load (integrity-checked: :class:`~minivess.training.reader.CheckedNiftiReader`),
    channel-first, optional resampling, binary label, then the intensity steps serving shares
    (:data:`minivess.data.intensity.INTENSITY_STEPS`: per-volume normalisation).

    Output: ``image`` float32 (1, x, y, z) with zero mean / unit std; ``label`` float32
    (1, x, y, z) in {0, 1}. These are the deterministic (cacheable) steps, shared with serving.
    """
    from monai.transforms import AsDiscreted, EnsureChannelFirstd, EnsureTyped, Spacingd

    from minivess.training.reader import LoadCheckedd

    keys = IMAGE_LABEL if with_label else [Keys.IMAGE.value]
    steps: list = [
        LoadCheckedd(keys=keys),
        EnsureChannelFirstd(keys=keys),
        EnsureTyped(keys=keys, dtype="float32", track_meta=resampling.enabled),
    ]
    if resampling.enabled and resampling.target_spacing is not None:
        modes = ("bilinear", "nearest")[: len(keys)]
        steps.append(Spacingd(keys=keys, pixdim=resampling.target_spacing, mode=modes))
        steps.append(EnsureTyped(keys=keys, dtype="float32", track_meta=False))
    if with_label:
        steps.append(AsDiscreted(keys=Keys.LABEL.value, threshold=0.5))
    steps.append(IntensityStepsd(keys=Keys.IMAGE.value))
    return steps


def train_transforms(plan: TrainingPlan, cfg: TrainConfig, cache_indices: bool = True) -> Compose:
    """Deterministic loading steps, then pad-to-patch, RandCropByPosNegLabeld and augmentation.

    Every output item is ``image`` (1, *plan.patch_size) float32 and ``label`` of the same shape
    in {0, 1}. ``cache_indices=False`` gives MONAI's default behaviour (crop-centre candidates
    recomputed from the label on every draw), the baseline of ``benchmarks/train_input.py``.
    """
    from monai.transforms import (
        Compose,
        DeleteItemsd,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandRotate90d,
        RandScaleIntensityd,
        RandShiftIntensityd,
        SpatialPadd,
    )

    patch = tuple(plan.patch_size)
    steps = load_transforms(cfg.resampling)
    steps.append(SpatialPadd(keys=IMAGE_LABEL, spatial_size=patch, value=0.0))
    if cache_indices:
        steps.append(FgBgIndicesd())
    steps.append(
        RandCropByPosNegLabeld(
            keys=IMAGE_LABEL,
            label_key=Keys.LABEL.value,
            fg_indices_key=FG_INDICES if cache_indices else None,
            bg_indices_key=BG_INDICES if cache_indices else None,
            spatial_size=patch,
            pos=cfg.pos_fraction,
            neg=1.0 - cfg.pos_fraction,
            num_samples=samples_per_volume(plan, cfg),
            allow_smaller=False,
        )
    )
    if cache_indices:
        steps.append(DeleteItemsd(keys=[FG_INDICES, BG_INDICES]))
    if cfg.augment:
        steps += [
            RandFlipd(keys=IMAGE_LABEL, prob=0.5, spatial_axis=0),
            RandFlipd(keys=IMAGE_LABEL, prob=0.5, spatial_axis=1),
            RandScaleIntensityd(keys=Keys.IMAGE.value, factors=0.1, prob=0.5),
            RandShiftIntensityd(keys=Keys.IMAGE.value, offsets=0.1, prob=0.5),
        ]
        if patch[0] == patch[1]:
            steps.append(RandRotate90d(keys=IMAGE_LABEL, prob=0.5, spatial_axes=(0, 1)))
    return Compose(steps)


def eval_transforms(resampling: ResamplingConfig, with_label: bool = True) -> Compose:
    """Whole-volume loading for validation, evaluation and inference (no crop, no pad)."""
    from monai.transforms import Compose

    return Compose(load_transforms(resampling, with_label=with_label))
