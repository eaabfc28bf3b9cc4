"""MONAI dictionary transforms of the training, validation and inference pipelines.

Volumes load at native resolution; resampling (``Spacingd``) runs only when the config enables
it. Intensities are normalised per volume (zero mean, unit std). Volumes smaller than the patch
are zero-padded (after normalisation, so the pad equals the volume mean), which the planner
lists in ``plan.padded_volumes``. Random crops are ``RandCropByPosNegLabeld`` with the plan's
patch; augmentation is light (flips, xy quarter turns when the patch is square in xy,
intensity scale/shift).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from minivess.keys import Keys

if TYPE_CHECKING:
    from monai.transforms import Compose

    from minivess.planning.plan import TrainingPlan
    from minivess.training.config import ResamplingConfig, TrainConfig

IMAGE_LABEL = [Keys.IMAGE.value, Keys.LABEL.value]


def load_transforms(resampling: ResamplingConfig, with_label: bool = True) -> list:
    """Load, channel-first, optional resampling, binary label, per-volume normalisation.

    Output: ``image`` float32 (1, x, y, z) with zero mean / unit std; ``label`` float32
    (1, x, y, z) in {0, 1}. These are the deterministic (cacheable) steps, shared with serving.
    """
    from monai.transforms import (
        AsDiscreted,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        NormalizeIntensityd,
        Spacingd,
    )

    keys = IMAGE_LABEL if with_label else [Keys.IMAGE.value]
    steps: list = [
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        EnsureTyped(keys=keys, dtype="float32", track_meta=resampling.enabled),
    ]
    if resampling.enabled:
        modes = ("bilinear", "nearest")[: len(keys)]
        steps.append(Spacingd(keys=keys, pixdim=resampling.target_spacing, mode=modes))
        steps.append(EnsureTyped(keys=keys, dtype="float32", track_meta=False))
    if with_label:
        steps.append(AsDiscreted(keys=Keys.LABEL.value, threshold=0.5))
    steps.append(NormalizeIntensityd(keys=Keys.IMAGE.value, channel_wise=True))
    return steps


def samples_per_volume(plan: TrainingPlan, cfg: TrainConfig) -> int:
    """Patches cropped per volume visit: ``cfg.samples_per_volume`` lowered to divide the batch.

    The loader then takes ``plan.batch_size // samples_per_volume`` volumes per batch, so every
    full batch holds exactly ``plan.batch_size`` patches.
    """
    n = max(1, min(cfg.samples_per_volume, plan.batch_size))
    while plan.batch_size % n:
        n -= 1
    return n


def train_transforms(plan: TrainingPlan, cfg: TrainConfig) -> Compose:
    """Deterministic loading steps, then pad-to-patch, RandCropByPosNegLabeld and augmentation.

    Every output item is ``image`` (1, *plan.patch_size) float32 and ``label`` of the same shape
    in {0, 1}.
    """
    from monai.transforms import (
        Compose,
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
    steps.append(
        RandCropByPosNegLabeld(
            keys=IMAGE_LABEL,
            label_key=Keys.LABEL.value,
            spatial_size=patch,
            pos=cfg.pos_fraction,
            neg=1.0 - cfg.pos_fraction,
            num_samples=samples_per_volume(plan, cfg),
            allow_smaller=False,
        )
    )
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
