"""The intensity preprocessing applied before inference: training's own steps, reused.

Serving must see voxels exactly as training did. The deterministic part of training's pipeline
is :func:`minivess.training.transforms.load_transforms`; serving has already loaded and validated
the array (safely, see :mod:`minivess.serving.nifti`), so it applies every step of that pipeline
that comes after loading/typing/resampling (today: ``NormalizeIntensityd(channel_wise=True)``,
zero mean and unit std per volume). No normalisation parameters are copied here.

Resampling is not applied at inference: a model trained with ``resampling.enabled`` would need
resample-in / resample-out around the network, which serving does not do yet.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from minivess.keys import Keys

#: Training steps that load, reshape or resample; serving has done (or skips) these.
_LOADING_STEPS = frozenset(
    {"LoadImaged", "LoadCheckedd", "EnsureChannelFirstd", "EnsureTyped", "Spacingd"}
)


@lru_cache(maxsize=1)
def intensity_steps() -> tuple[Any, ...]:
    """Training's deterministic image steps after loading (built once per process)."""
    from minivess.training.config import ResamplingConfig
    from minivess.training.transforms import load_transforms

    steps = load_transforms(ResamplingConfig(), with_label=False)
    return tuple(s for s in steps if type(s).__name__ not in _LOADING_STEPS)


def preprocess_for_inference(volume: np.ndarray) -> np.ndarray:
    """Apply training's intensity steps to a raw (x, y, z) volume; returns float32 (x, y, z)."""
    data: dict[str, Any] = {Keys.IMAGE.value: np.asarray(volume, dtype=np.float32)[None]}
    for step in intensity_steps():
        data = step(data)
    image = data[Keys.IMAGE.value]
    array = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    return np.asarray(array[0], dtype=np.float32)
