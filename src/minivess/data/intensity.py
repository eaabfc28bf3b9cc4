"""The intensity steps between a loaded volume and the network, in one list.

Training runs them as the last deterministic steps of its pipeline
(:func:`minivess.training.transforms.load_transforms`), serving on the array it has loaded and
validated (:func:`minivess.serving.preprocess.preprocess_for_inference`): one list, so serving
sees voxels exactly as training did. Plain torch, so a serving process never imports MONAI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def normalize_intensity(image: torch.Tensor) -> torch.Tensor:
    """Each channel of a (C, x, y, z) image to zero mean and unit standard deviation, float32 (a
    constant channel: its mean subtracted, divided by 1). What MONAI's
    ``NormalizeIntensity(channel_wise=True)`` computes, operation for operation
    (tests/unit/data/test_intensity.py)."""
    import torch

    out = torch.empty(image.shape, dtype=torch.float32, device=image.device)
    for c, channel in enumerate(image.float()):
        mean = torch.mean(channel).item()
        std = torch.std(channel, unbiased=False).item()
        out[c] = (channel - mean) / (std if std != 0.0 else 1.0)
    return out


#: The steps, in order: each maps a (C, x, y, z) image tensor to one of the same shape.
INTENSITY_STEPS: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (normalize_intensity,)
