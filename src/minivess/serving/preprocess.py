"""The intensity preprocessing applied before inference: training's own steps, reused.

Serving must see voxels exactly as training did. Both run the one list of intensity steps,
:data:`minivess.data.intensity.INTENSITY_STEPS` (today: zero mean and unit std per volume):
training as the last deterministic steps of its pipeline
(:func:`minivess.training.transforms.load_transforms`), serving here, on the array it has
already loaded and validated (safely, see :mod:`minivess.serving.nifti`). No normalisation
parameters are copied here, and MONAI is not imported.

Resampling is not applied here: a model trained with ``resampling.enabled`` is served through
resample-in / resample-out around the network (:mod:`minivess.serving.inference`).
"""

from __future__ import annotations

import numpy as np


def preprocess_for_inference(volume: np.ndarray) -> np.ndarray:
    """Apply training's intensity steps to a raw (x, y, z) volume; returns float32 (x, y, z)."""
    import torch

    from minivess.data.intensity import INTENSITY_STEPS

    image = torch.from_numpy(np.array(volume, dtype=np.float32)[None])
    for step in INTENSITY_STEPS:
        image = step(image)
    return image[0].numpy()
