"""Named keys used across the pipeline. No bare ``"image"`` / ``"label"`` strings elsewhere."""

from __future__ import annotations

from enum import StrEnum


class Keys(StrEnum):
    """Dictionary keys of a data item flowing through MONAI transforms."""

    IMAGE = "image"
    LABEL = "label"
    NAME = "name"
    PRED = "pred"


class Source(StrEnum):
    """Where a planned value came from."""

    AUTO = "auto"
    OVERRIDE = "override"


class PatchPolicy(StrEnum):
    """How the planner bounds the patch by the data (seed decision D2, docs/planner.md)."""

    MIN_VOLUME = "min_volume"  # the smallest usable volume bounds the patch: nothing padded
    MEDIAN_PAD = "median_pad"  # nnU-Net: the median shape bounds it, smaller volumes padded


class SmallVolumes(StrEnum):
    """What happens to a volume below the network's minimum patch."""

    QUARANTINE = "quarantine"  # left out of training, with the reason
    PAD = "pad"  # zero-padded up to the patch, listed with the amount


class Tier(StrEnum):
    """Compute tiers of the seed's table (§2, Phase A)."""

    CPU = "cpu"
    GPU_LOW = "gpu_low"
    GPU_HIGH = "gpu_high"
    DGX_SPARK = "dgx_spark"
    CLOUD_SINGLE = "cloud_single"
    CLOUD_MULTI = "cloud_multi"


class Environment(StrEnum):
    """Where the process runs."""

    LOCAL = "local"
    DOCKER = "docker"
    CLOUD = "cloud"
    CI = "ci"
