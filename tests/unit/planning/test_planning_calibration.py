"""Calibration files: the fit, where they live, and what a broken one says."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.planning.calibration import (
    Calibration,
    CalibrationPoint,
    calibration_path,
    default_patches,
    fit_memory_model,
    load_calibration,
    save_calibration,
)
from minivess.planning.profiles import list_model_profiles, load_model_profile
from minivess.planning.topology import is_valid_size


def _points(base: float, bpv: float, sizes: list[int], batch: int = 1) -> list[CalibrationPoint]:
    return [
        CalibrationPoint(
            patch=(s, s, 8),
            voxels=s * s * 8,
            batch=batch,
            peak_mb=base + batch * s * s * 8 * bpv / 2**20,
        )
        for s in sizes
    ]


def test_fit_recovers_a_linear_memory_model():
    base, bpv = fit_memory_model(_points(300.0, 1500.0, [32, 48, 64], batch=2))
    assert base == pytest.approx(300.0, rel=1e-6)
    assert bpv == pytest.approx(1500.0, rel=1e-6)
    with pytest.raises(ValueError, match="two different"):
        fit_memory_model(_points(300.0, 1500.0, [32, 32]))


def test_save_and_load_under_the_cache_dir(_cache_in_tmp: Path):
    cal = Calibration(
        model="dynunet",
        device="cpu",
        amp=False,
        base_mb=300.0,
        train_bytes_per_voxel=1500.0,
        points=_points(300, 1500, [32, 64]),
        created="2026-11-26T00:00:00Z",
    )
    path = save_calibration(cal)
    assert path == calibration_path("dynunet", "cpu")
    assert path.is_relative_to(_cache_in_tmp)
    assert load_calibration("dynunet", "cpu") == cal
    assert load_calibration("dynunet", "cuda-h100") is None
    assert cal.predict_mb(8192, 2) == pytest.approx(300 + 2 * 8192 * 1500 / 2**20)


def test_broken_calibration_file_says_how_to_fix(_cache_in_tmp: Path):
    path = calibration_path("segresnet", "cpu")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="minivess calibrate --model segresnet"):
        load_calibration("segresnet", "cpu")


@pytest.mark.parametrize("name", list_model_profiles())
def test_default_patches_suit_each_topology(name):
    profile = load_model_profile(name)
    patches = default_patches(profile)
    assert len(patches) == 3 and len({p[0] * p[1] * p[2] for p in patches}) == 3
    assert all(is_valid_size(s, profile.topology) for p in patches for s in p)
