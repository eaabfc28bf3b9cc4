"""Safe input: every refusal is an InputRejected with a 4xx status, decided before allocation."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from serving_factories import write_nifti

from minivess.serving.nifti import InputRejected, inspect_header, load_volume, mask_nifti_gz

LIMIT = 10**6


def _rejected(path: Path, status: int, code: str, max_voxels: int = LIMIT) -> InputRejected:
    with pytest.raises(InputRejected) as info:
        load_volume(path, max_voxels)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.as_json()["detail"]
    return info.value


def test_loads_synthetic_volume_with_spacing_in_um(volume_path: Path) -> None:
    vol = load_volume(volume_path, LIMIT)
    ref = nib.load(volume_path)
    assert vol.array.shape == ref.shape == (64, 48, 10)
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, ref.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(vol.affine, ref.affine)
    assert vol.info.spacing_um == (0.5, 0.5, 2.0)
    assert vol.voxel_volume_um3 == pytest.approx(0.5)


def test_type_comes_from_content_not_file_name(tmp_path: Path) -> None:
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = write_nifti(tmp_path / "v.nii", arr)
    renamed = path.rename(tmp_path / "upload.bin")
    np.testing.assert_array_equal(load_volume(renamed, LIMIT).array, arr)
    gz = tmp_path / "other.txt"
    gz.write_bytes(gzip.compress(renamed.read_bytes()))
    np.testing.assert_array_equal(load_volume(gz, LIMIT).array, arr)


def test_millimetre_header_is_converted_to_um(tmp_path: Path) -> None:
    path = write_nifti(
        tmp_path / "v.nii.gz", np.zeros((4, 4, 4), np.float32), (0.001, 0.002, 0.005), "mm"
    )
    info = inspect_header(path, LIMIT)
    assert info.spacing_um == pytest.approx((1.0, 2.0, 5.0))
    assert not info.spacing_unit_assumed


def test_garbage_is_415(tmp_path: Path) -> None:
    junk = tmp_path / "x.nii.gz"
    junk.write_bytes(b"this is not an image" * 40)
    assert "NIfTI" in str(_rejected(junk, 415, "not_nifti"))
    gz_junk = tmp_path / "y.nii.gz"
    gz_junk.write_bytes(gzip.compress(b"\x00" * 1000))
    _rejected(gz_junk, 415, "not_nifti")


def test_4d_and_2d_are_422_but_trailing_singleton_is_fine(tmp_path: Path) -> None:
    _rejected(write_nifti(tmp_path / "a.nii.gz", np.zeros((8, 8, 4, 2), np.float32)), 422, "not_3d")
    _rejected(write_nifti(tmp_path / "b.nii.gz", np.zeros((8, 8), np.float32)), 422, "not_3d")
    ok = load_volume(write_nifti(tmp_path / "c.nii.gz", np.ones((8, 8, 4, 1), np.float32)), LIMIT)
    assert ok.array.shape == (8, 8, 4)


def test_nan_is_422(tmp_path: Path) -> None:
    arr = np.ones((6, 6, 3), np.float32)
    arr[1, 2, 0] = np.nan
    err = _rejected(write_nifti(tmp_path / "n.nii.gz", arr), 422, "not_finite")
    assert "1 NaN/inf" in err.message


def test_too_many_voxels_is_413(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "big.nii.gz", np.zeros((20, 20, 10), np.uint8))
    _rejected(path, 413, "too_many_voxels", max_voxels=3999)
    assert load_volume(path, 4000).array.shape == (20, 20, 10)


def test_decompression_bomb_is_refused_from_the_header_without_allocating(tmp_path: Path) -> None:
    """A 4096³ float32 volume (256 GiB) declared in a file of a few kB."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4096, 4096, 4096))
    hdr.set_data_dtype(np.float32)
    hdr["vox_offset"] = 352
    bomb = tmp_path / "bomb.nii.gz"
    bomb.write_bytes(gzip.compress(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 100_000))
    assert bomb.stat().st_size < 10_000
    tracemalloc.start()
    _rejected(bomb, 413, "too_many_voxels", max_voxels=512 * 512 * 160)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 5 * 2**20  # nothing near the declared size was allocated


def test_truncated_body_is_400(tmp_path: Path) -> None:
    full = write_nifti(tmp_path / "t.nii", np.ones((16, 16, 8), np.float32))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(full.read_bytes()[:2000])
    _rejected(cut, 400, "truncated")


def test_mask_keeps_shape_affine_and_spacing(volume_path: Path) -> None:
    vol = load_volume(volume_path, LIMIT)
    mask = (vol.array > vol.array.mean()).astype(np.uint8)
    img = nib.Nifti1Image.from_bytes(gzip.decompress(mask_nifti_gz(mask, vol)))
    assert img.shape == vol.array.shape
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, vol.affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), mask)
    assert img.header.get_xyzt_units()[0] == "micron"
    with pytest.raises(ValueError, match="mask shape"):
        mask_nifti_gz(mask[:-1], vol)


def _crafted(tmp_path: Path, name: str, **fields) -> Path:
    """A valid 16×16×8 uint8 .nii.gz whose header fields are then overwritten."""
    img = nib.Nifti1Image(np.zeros((16, 16, 8), np.uint8), np.eye(4))
    hdr = img.header.copy()
    hdr["vox_offset"] = 352
    for key, value in fields.items():
        hdr[key] = value
    path = tmp_path / name
    path.write_bytes(gzip.compress(hdr.binaryblock + b"\x00" * 4 + b"\x00" * 2048))
    return path


def test_huge_vox_offset_is_refused_before_reading_the_padding(tmp_path: Path) -> None:
    """The bomb of issue 11: 16×16×8 voxels behind a declared 4 GiB header, streamed gzip."""
    img = nib.Nifti1Image(np.zeros((16, 16, 8), np.uint8), np.eye(4))
    hdr = img.header.copy()
    hdr["vox_offset"] = 4 * 2**30
    path = tmp_path / "bomb.nii.gz"
    with gzip.open(path, "wb", compresslevel=9) as gz:
        gz.write(hdr.binaryblock + b"\x00" * 4)
        for _ in range(64):  # 1 GiB of zeros compresses to ~1 MB
            gz.write(b"\x00" * 2**24)
    tracemalloc.start()
    err = _rejected(path, 400, "bad_header")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "vox_offset" in err.message
    assert peak < 5 * 2**20


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"vox_offset": 100}, "vox_offset"),
        ({"vox_offset": 352.5}, "vox_offset"),
        ({"pixdim": [1, 1, -1e9, 1, 1, 1, 1, 1]}, "pixdim"),
        ({"pixdim": [1, 1, np.inf, 1, 1, 1, 1, 1]}, "pixdim"),
        ({"scl_slope": np.inf}, "scl_slope"),
        ({"dim": [9, 16, 16, 8, 1, 1, 1, 1]}, "header"),  # read as byte-swapped: invalid
        ({"dim": [3, 16, -16, 8, 1, 1, 1, 1]}, "dim"),
    ],
)
def test_every_header_field_is_bounded(tmp_path: Path, fields, named) -> None:
    """(nibabel's own check fixes what is fixable, e.g. a zero pixdim or a wrong bitpix.)"""
    path = _crafted(tmp_path, "crafted.nii.gz", **fields)
    with pytest.raises(InputRejected) as info:
        load_volume(path, LIMIT)
    assert 400 <= info.value.status < 500
    assert info.value.code == "bad_header"
    assert named.replace("_", " ") in info.value.message.replace("_", " ")
