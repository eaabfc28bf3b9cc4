"""Fixtures of the models area: plans made by the real planner for full-scale MiniVess shapes."""

from __future__ import annotations

import pytest

from minivess.config import config_dir
from minivess.data.schema import DatasetProfile
from minivess.planning.hardware import HardwareBudget, load_hardware


@pytest.fixture(scope="session")
def minivess_shapes_profile() -> DatasetProfile:
    """Aggregate statistics of full-scale synthetic MiniVess (min Z=5), without voxels."""
    from minivess.data.synth import volume_specs

    shapes = [s.shape for s in volume_specs("full", seed=0)]
    lo = tuple(min(s[a] for s in shapes) for a in range(3))
    hi = tuple(max(s[a] for s in shapes) for a in range(3))
    return DatasetProfile(
        data_dir="synthetic-full",
        n_volumes=len(shapes),
        min_shape=lo,
        max_shape=hi,
        median_shape=hi,
        spacing_range=((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
        is_anisotropic=False,
        total_size_gb=sum(4 * x * y * z for x, y, z in shapes) / 1e9,
        dataset_hash="0" * 16,
    )


@pytest.fixture(scope="session")
def laptop() -> HardwareBudget:
    """The shipped CPU-only example machine (16 GB RAM)."""
    return load_hardware(config_dir() / "hardware" / "cpu_16gb.yaml")
