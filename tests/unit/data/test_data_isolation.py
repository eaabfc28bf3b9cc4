"""Per-file isolation and integrity: each crash class is one file's one-line reason."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from minivess.data.profiler import profile_dataset
from minivess.data.schema import VolumePair
from minivess.data.validation import affine_notes, check_header, inflate_cap, validate_pair
from tests.fixtures.broken import (
    complex_image,
    corrupt_keep_mtime,
    negative_dim,
    nifti_bytes,
    rgb,
    unknown_dtype,
    write_pair,
)
from tests.fixtures.tiny import write_tiny_dataset


def _pair(root: Path, name: str) -> VolumePair:
    return VolumePair(
        name=name, image=str(root / "raw" / f"{name}.nii.gz"),
        label=str(root / "seg" / f"{name}_y.nii.gz"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("maker", "words"),
    [
        (rgb, ["colour", "greyscale"]),
        (complex_image, ["complex", "magnitude"]),
        (negative_dim, ["negative size", "(16, -16, 4)"]),
        (unknown_dtype, ["unknown datatype code 999"]),
    ],
)
def test_crash_class_is_a_one_line_reason(tmp_path: Path, maker, words) -> None:
    write_pair(tmp_path, "bad", maker())
    rejected = validate_pair(_pair(tmp_path, "bad"))
    assert rejected is not None
    for word in words:
        assert word in rejected.reason
    assert "\n" not in rejected.reason


def test_inflate_beyond_the_declared_size_is_refused_without_inflating_it(
    tmp_path: Path,
) -> None:
    raw = bytes(nifti_bytes(np.zeros((16, 16, 4), dtype=np.uint8)))
    extra = inflate_cap(len(raw)) + 4096 - len(raw)  # just past the cap: cheap to build
    write_pair(tmp_path, "bomb", gzip.compress(raw + bytes(extra)))
    rejected = validate_pair(_pair(tmp_path, "bomb"))
    assert rejected is not None and "more data than its header declares" in rejected.reason


def test_trailing_bytes_within_the_margin_are_accepted(tmp_path: Path) -> None:
    raw = bytes(nifti_bytes(np.ones((16, 16, 4), dtype=np.uint8)))
    write_pair(tmp_path, "pad", gzip.compress(raw + bytes(1000)))
    assert validate_pair(_pair(tmp_path, "pad")) is None


def test_oblique_and_sheared_affines_are_noted_not_rejected(tmp_path: Path) -> None:
    import nibabel as nib

    theta = np.radians(20)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    shear = np.eye(4)
    shear[0, 1] = 0.3
    assert affine_notes(np.diag([0.7, -0.7, 5.0, 1.0])) == []
    assert any("oblique" in n and "20.0°" in n for n in affine_notes(rot))
    assert any("sheared" in n for n in affine_notes(shear))
    img = nib.Nifti1Image(np.zeros((4, 4, 2), dtype=np.uint8), rot)
    nib.save(img, tmp_path / "ob.nii.gz")
    assert any("oblique" in w for w in check_header(tmp_path / "ob.nii.gz").warnings)


def test_a_bad_file_never_stops_the_profile(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(tmp_path / "cache"))
    data = write_tiny_dataset(tmp_path / "d")
    for name, maker in {"bad1": rgb, "bad2": negative_dim, "bad3": complex_image}.items():
        write_pair(data, name, maker())
    profile = profile_dataset(data, progress=False, workers=1)
    assert profile.n_volumes == 6
    assert sorted(Path(r.file).name for r in profile.rejected) == [
        "bad1.nii.gz", "bad2.nii.gz", "bad3.nii.gz",
    ]  # fmt: skip


def test_cache_hit_is_proven_by_content_not_mtime(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINIVESS_CACHE_DIR", str(tmp_path / "cache"))
    data = write_tiny_dataset(tmp_path / "d")
    first = profile_dataset(data, progress=False, workers=1)
    again = profile_dataset(data, progress=False, workers=1)
    assert again.n_cached == 6 and again.dataset_hash == first.dataset_hash
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    corrupt_keep_mtime(copy / "seg" / "mv02_y.nii.gz")  # a label this time
    after = profile_dataset(copy, progress=False, workers=1)
    assert after.dataset_hash != first.dataset_hash
    assert [Path(r.file).name for r in after.rejected] == ["mv02.nii.gz"]
    assert "label mv02_y.nii.gz" in after.rejected[0].reason


def test_training_reader_refuses_a_file_corrupted_after_the_gate(tmp_path: Path) -> None:
    from minivess.errors import DataError
    from minivess.training.config import ResamplingConfig
    from minivess.training.transforms import eval_transforms

    data = write_tiny_dataset(tmp_path / "d")
    item = {
        "image": str(data / "raw" / "mv01.nii.gz"),
        "label": str(data / "seg" / "mv01_y.nii.gz"),
    }
    load = eval_transforms(ResamplingConfig())
    assert tuple(load(item)["image"].shape) == (1, 32, 32, 12)
    corrupt_keep_mtime(Path(item["image"]), n=256)
    with pytest.raises(RuntimeError) as err:  # MONAI wraps it; train() reports the cause
        load(item)
    cause = err.value.__cause__
    assert isinstance(cause, DataError) and "mv01.nii.gz" in str(cause)
