"""The profiler: native-resolution statistics, dataset summary, cache, hash, JSON output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivess.config import config_dir
from minivess.data.profiler import (
    dataset_content_hash,
    intensity_stats,
    profile_dataset,
    scan_headers,
    spacing_outliers,
    summarize,
)
from minivess.data.schema import DatasetProfile, VolumeStats
from minivess.data.synth import synthesize, volume_specs
from minivess.errors import DataError


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.uint8])
def test_integer_stats_are_exact(dtype: type) -> None:
    rng = np.random.default_rng(1)
    lo = -300 if dtype == np.int16 else 0
    hi = 250 if dtype == np.uint8 else 4000
    image = np.asfortranarray(rng.integers(lo, hi, size=(40, 30, 9)).astype(dtype))
    stats = intensity_stats(image)
    assert stats["intensity_min"] == image.min() and stats["intensity_max"] == image.max()
    assert stats["intensity_mean"] == pytest.approx(image.mean(dtype=np.float64))
    assert stats["intensity_std"] == pytest.approx(image.std(dtype=np.float64))
    for q in (1, 99):
        expected = np.percentile(image, q, method="inverted_cdf")
        assert stats[f"intensity_p{q}"] == expected
    assert sum(stats["hist"]) == image.size


def test_float_stats_are_close() -> None:
    rng = np.random.default_rng(2)
    image = rng.normal(100.0, 15.0, size=(50, 40, 7)).astype(np.float32)
    stats = intensity_stats(image)
    span = float(image.max() - image.min())
    assert stats["intensity_mean"] == pytest.approx(float(image.mean()), rel=1e-5)
    assert stats["intensity_std"] == pytest.approx(float(image.std()), rel=1e-4)
    for q in (1, 99):  # nearest rank, to within one of the 4096 histogram bins
        expected = np.percentile(image, q, method="inverted_cdf")
        assert abs(stats[f"intensity_p{q}"] - expected) <= span / 4096


def test_shapes_are_native_and_min_shape_is_per_axis_min(small_dataset: Path) -> None:
    profile = profile_dataset(small_dataset, workers=1, progress=False)
    specs = {s.name: s for s in volume_specs()}
    for vol in profile.volumes:
        # no resampling: shape and spacing are exactly the files' own
        assert vol.shape == specs[vol.name].shape
        assert vol.spacing == pytest.approx(specs[vol.name].spacing)
        assert vol.shape == nib.load(vol.file).shape
    shapes = np.array([s.shape for s in specs.values()])
    assert profile.min_shape == tuple(shapes.min(axis=0))
    assert profile.max_shape == tuple(shapes.max(axis=0))
    assert profile.median_shape == tuple(int(x) for x in np.floor(np.median(shapes, axis=0)))
    assert profile.min_shape[2] == 5
    assert profile.n_volumes == 6
    assert profile.total_size_gb == pytest.approx(shapes.prod(axis=1).sum() * 4 / 1e9)


def test_min_shape_takes_each_axis_from_a_different_volume() -> None:
    def vol(name: str, shape: tuple[int, int, int]) -> VolumeStats:
        return VolumeStats(
            name=name, file=f"{name}.nii.gz", label_file=None, shape=shape,
            spacing=(0.5, 0.5, 2.0), dtype="uint16", intensity_min=0, intensity_max=1,
            intensity_mean=0.5, intensity_std=0.1, intensity_p1=0, intensity_p99=1,
            foreground_ratio=0.02, bytes=int(np.prod(shape)) * 4,
        )  # fmt: skip

    profile = summarize("d", [vol("a", (256, 512, 40)), vol("b", (512, 128, 9))], [], "h")
    assert profile.min_shape == (256, 128, 9)
    assert profile.max_shape == (512, 512, 40)
    assert any("smallest z is 9" in w and "b" in w for w in profile.warnings)


def test_no_resampling_by_default() -> None:
    defaults = yaml.safe_load((config_dir() / "data" / "defaults.yaml").read_text())
    assert defaults["resampling"]["enabled"] is False
    assert defaults["resampling"]["method"] is None
    assert defaults["resampling"]["target_spacing"] is None


def test_spacing_outlier_is_named(small_dataset: Path) -> None:
    profile = profile_dataset(small_dataset, workers=1, progress=False)
    outlier_warnings = [w for w in profile.warnings if "spacing outlier" in w]
    assert len(outlier_warnings) == 1 and outlier_warnings[0].startswith("mv02:")
    assert any("spacing outlier" in w for w in profile.volume("mv02").warnings)
    assert not any("spacing outlier" in w for w in profile.volume("mv01").warnings)
    assert profile.is_anisotropic


def test_spacing_outliers_threshold() -> None:
    spacings = {f"v{i}": (0.5 + 0.05 * i, 0.5, 2.0) for i in range(5)}
    assert spacing_outliers(spacings) == {}
    spacings["odd"] = (0.5, 0.5, 0.2)  # z 10x finer than the median
    assert list(spacing_outliers(spacings)) == ["odd"]


def test_unchanged_dataset_hits_the_cache(tiny_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "pcache"
    first = profile_dataset(tiny_dataset, cache_dir=cache, workers=1, progress=False)
    assert (first.n_scanned, first.n_cached) == (3, 0)
    second = profile_dataset(tiny_dataset, cache_dir=cache, workers=1, progress=False)
    assert (second.n_scanned, second.n_cached) == (0, 3)
    assert second.model_dump_json() == first.model_dump_json()
    # a changed volume is read again, and only that one; the dataset hash moves
    synthesize(tiny_dataset, n_volumes=1, seed=99, progress=False)  # rewrites mv01
    third = profile_dataset(tiny_dataset, cache_dir=cache, workers=1, progress=False)
    assert (third.n_scanned, third.n_cached) == (1, 2)
    assert third.dataset_hash != first.dataset_hash
    assert third.volume("mv01") != first.volume("mv01")


def test_dataset_hash_is_content_not_location(tiny_dataset: Path, tmp_path: Path) -> None:
    h1 = dataset_content_hash(tiny_dataset)
    copy = tmp_path / "elsewhere"
    shutil.copytree(tiny_dataset, copy)
    assert dataset_content_hash(copy) == h1
    assert profile_dataset(copy, workers=1, progress=False).dataset_hash == h1
    (copy / "raw" / "mv02.nii.gz").write_bytes((copy / "raw" / "mv03.nii.gz").read_bytes())
    assert dataset_content_hash(copy) != h1


def test_json_output_round_trips_and_documents_the_keys(small_dataset: Path) -> None:
    profile = profile_dataset(small_dataset, workers=1, progress=False)
    data = json.loads(profile.model_dump_json())
    for key in (
        "n_volumes", "min_shape", "max_shape", "median_shape", "spacing_range",
        "is_anisotropic", "total_size_gb", "warnings", "rejected", "dataset_hash", "volumes",
    ):  # fmt: skip
        assert key in data
    assert "n_scanned" not in data
    assert len(data["volumes"]) == 6
    for key in ("file", "shape", "spacing", "dtype", "intensity_p1", "foreground_ratio", "bytes"):
        assert key in data["volumes"][0]
    assert DatasetProfile.model_validate_json(profile.model_dump_json()) == profile.model_copy(
        update={"n_scanned": 0, "n_cached": 0}
    )


def test_header_scan_matches_the_profile(small_dataset: Path) -> None:
    headers, rejected = scan_headers(small_dataset)
    assert rejected == []
    assert [h.shape for h in headers] == [s.shape for s in volume_specs()]


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match="no image/label pair found"):
        profile_dataset(tmp_path, progress=False)


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int16]),
        shape=hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
    )
)
def test_integer_stats_match_numpy_for_any_volume(image: np.ndarray) -> None:
    stats = intensity_stats(np.asfortranarray(image))
    assert stats["intensity_min"] == image.min() and stats["intensity_max"] == image.max()
    assert stats["intensity_mean"] == pytest.approx(image.mean(dtype=np.float64), abs=1e-9)
    assert stats["intensity_std"] == pytest.approx(image.std(dtype=np.float64), abs=1e-6)
    for q in (1, 99):
        assert stats[f"intensity_p{q}"] == np.percentile(image, q, method="inverted_cdf")
