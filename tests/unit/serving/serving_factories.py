"""Factories of the serving tests: a tiny plan and network, real synthetic NIfTI volumes.

The network is a small MONAI DynUNet built from the plan's strides and kernel sizes (via
``minivess.models.build_model`` once the planner ships it; until then built here, for tests
only), so export, ONNX Runtime and sliding-window inference run for real in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minivess.keys import Tier
from minivess.planning.plan import TrainingPlan

STRIDES = [(1, 1, 1), (2, 2, 1), (2, 2, 1)]
KERNELS = [(3, 3, 3), (3, 3, 3), (3, 3, 1)]


def make_plan(roi: tuple[int, int, int] = (32, 32, 8)) -> TrainingPlan:
    """A CPU plan with a 32×32×8 window (divisors 4, 4, 1)."""
    return TrainingPlan(
        model="dynunet",
        tier=Tier.CPU,
        patch_size=roi,
        batch_size=1,
        cache_rate=0.0,
        num_workers=0,
        amp=False,
        sw_roi=roi,
        sw_overlap=0.25,
        sw_batch_size=1,
        strides=STRIDES,
        kernel_sizes=KERNELS,
    )


def make_model(plan: TrainingPlan, seed: int = 0):
    """A tiny seeded network for ``plan`` (2 output classes)."""
    import torch

    from minivess.models import build_model

    torch.manual_seed(seed)
    return build_model(plan, in_channels=1, out_channels=2).eval()


def write_synthetic(out_dir: Path, shape=(64, 48, 10), spacing=(0.5, 0.5, 2.0), seed=1) -> Path:
    """One MiniVess-like image written by the data layer's synthesiser; returns its path."""
    from minivess.data.synth import JSON_DIR, RAW_DIR, SEG_DIR, VolumeSpec, write_volume

    for sub in (RAW_DIR, SEG_DIR, JSON_DIR):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    spec = VolumeSpec(name=f"mv{seed:02d}", shape=shape, spacing=spacing, seed=seed)
    return Path(write_volume(out_dir, spec, seed=seed).image)


def write_nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), unit="micron") -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(array, np.diag([*spacing[:3], 1.0]))
    img.header.set_xyzt_units(xyz=unit)
    img.to_filename(str(path))
    return path
