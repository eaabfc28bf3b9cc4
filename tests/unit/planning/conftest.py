"""Fixtures of the planning area: dataset profiles built from shapes (no voxels), hardware."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from planning_profiles import profile_from_shapes

from minivess.config import config_dir
from minivess.data.schema import DatasetProfile
from minivess.planning.hardware import HardwareBudget, load_hardware

ProfileFactory = Callable[..., DatasetProfile]

#: The five example machines of the acceptance criteria (configs/hardware/*.yaml).
HARDWARE_NAMES = ("cpu_16gb", "gpu_8gb", "gpu_24gb", "gpu_80gb", "gpu_4x80gb")


@pytest.fixture(scope="session")
def full_minivess() -> DatasetProfile:
    """Full-scale synthetic MiniVess statistics (70 × 512×512×Z, Z in [5, 110]), no voxels."""
    from minivess.data.synth import volume_specs

    specs = volume_specs("full", seed=0)
    return profile_from_shapes(
        [s.shape for s in specs],
        [s.spacing for s in specs],
        [s.name for s in specs],
        data_dir="synthetic-full",
    )


@pytest.fixture(scope="session")
def generated_small(tmp_path_factory: pytest.TempPathFactory) -> DatasetProfile:
    """The real profiler's view of the small synthetic dataset (6 volumes, one with Z=5)."""
    from minivess.data.profiler import profile_dataset
    from minivess.data.synth import synthesize

    root = tmp_path_factory.mktemp("planning_small")
    synthesize(root / "data", scale="small", seed=0, progress=False)
    return profile_dataset(root / "data", cache_dir=root / "cache", workers=1, progress=False)


@pytest.fixture
def make_profile() -> ProfileFactory:
    """Factory: ``make_profile(shapes, spacings=None, names=None)`` -> DatasetProfile."""
    return profile_from_shapes


@pytest.fixture(scope="session")
def hardware() -> dict[str, HardwareBudget]:
    """The shipped example machines, by name."""
    return {n: load_hardware(config_dir() / "hardware" / f"{n}.yaml") for n in HARDWARE_NAMES}


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Calibrations go to a per-test cache, never the user's ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(cache))
    return cache
