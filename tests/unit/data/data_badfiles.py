"""Builders of broken volumes, for the tests of validation and profiling.

Each builder writes one case into a MiniVess-layout dataset (``raw/NAME.nii.gz`` and, where it
makes sense, ``seg/NAME_y.nii.gz``). :data:`BAD_CASES` maps the case name to the builder and to
a fragment that the one-line rejection reason must contain.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (24, 20, 6)
#: byte offset of pixdim[0] in a NIfTI-1 header
PIXDIM_OFFSET = 76


def _affine(spacing: tuple[float, float, float] = (0.7, 0.7, 2.0)) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def _image(shape: tuple[int, ...] = SHAPE, dtype: type = np.uint16) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 2000, size=shape).astype(dtype)


def _label(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[4:10, 4:10, ...] = 1
    return label


def write_pair(
    root: Path,
    name: str,
    image: np.ndarray,
    label: np.ndarray | None,
    cls: type = nib.Nifti1Image,
    label_affine: np.ndarray | None = None,
) -> Path:
    """Write ``raw/NAME.nii.gz`` (and ``seg/NAME_y.nii.gz`` unless ``label`` is None)."""
    (root / "raw").mkdir(parents=True, exist_ok=True)
    (root / "seg").mkdir(parents=True, exist_ok=True)
    img_path = root / "raw" / f"{name}.nii.gz"
    cls(image, _affine()).to_filename(img_path)
    if label is not None:
        aff = _affine() if label_affine is None else label_affine
        cls(label, aff).to_filename(root / "seg" / f"{name}_y.nii.gz")
    return img_path


def corrupted_gzip(root: Path, name: str) -> None:
    path = write_pair(root, name, _image((48, 48, 12)), _label((48, 48, 12)))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)  # zero a block of the deflate stream
    path.write_bytes(bytes(data))


def truncated(root: Path, name: str) -> None:
    path = write_pair(root, name, _image((48, 48, 12)), _label((48, 48, 12)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def four_d(root: Path, name: str) -> None:
    write_pair(root, name, _image((*SHAPE, 3)), _label((*SHAPE, 3)))


def nifti2(root: Path, name: str) -> None:
    write_pair(root, name, _image(), _label(), cls=nib.Nifti2Image)


def shape_mismatch(root: Path, name: str) -> None:
    write_pair(root, name, _image(), _label((24, 20, 5)))


def affine_mismatch(root: Path, name: str) -> None:
    write_pair(root, name, _image(), _label(), label_affine=_affine((0.7, 0.7, 3.0)))


def non_binary_label(root: Path, name: str) -> None:
    label = _label()
    label[0, 0, 0] = 2
    label[1, 0, 0] = 7
    write_pair(root, name, _image(), label)


def nan_intensities(root: Path, name: str) -> None:
    image = _image(dtype=np.float32)
    image[3, 3, 3] = np.nan
    image[4, 4, 4] = np.inf
    write_pair(root, name, image, _label())


def zero_sized_axis(root: Path, name: str) -> None:
    write_pair(root, name, _image((24, 20, 0)), _label((24, 20, 0)))


def not_nifti(root: Path, name: str) -> None:
    write_pair(root, name, _image(), _label())
    (root / "raw" / f"{name}.nii.gz").write_bytes(gzip.compress(b"this is a text file\n" * 50))


def plain_text(root: Path, name: str) -> None:
    write_pair(root, name, _image(), _label())
    (root / "raw" / f"{name}.nii.gz").write_text("a PNG export, renamed\n")


def missing_label(root: Path, name: str) -> None:
    write_pair(root, name, _image(), None)


def bad_spacing(root: Path, name: str) -> None:
    """pixdim[2] patched to 0 in the stored bytes (nibabel would silently 'fix' it on load)."""
    path = write_pair(root, name, _image(), _label())
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[PIXDIM_OFFSET + 8 : PIXDIM_OFFSET + 12] = struct.pack("<f", 0.0)
    path.write_bytes(gzip.compress(bytes(raw)))


#: name -> (builder, fragment of the rejection reason)
BAD_CASES: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "bad_gzip": (corrupted_gzip, "corrupted"),
    "bad_trunc": (truncated, "truncated"),
    "bad_4d": (four_d, "4D volume"),
    "bad_nifti2": (nifti2, "NIfTI-2"),
    "bad_shape": (shape_mismatch, "shape (24, 20, 5) != image shape (24, 20, 6)"),
    "bad_affine": (affine_mismatch, "affine differs"),
    "bad_labels": (non_binary_label, "values {2, 7} outside the classes [0, 1]"),
    "bad_nan": (nan_intensities, "2 NaN/Inf voxel(s)"),
    "bad_zero": (zero_sized_axis, "zero-sized axis"),
    "bad_notnifti": (not_nifti, "not readable as NIfTI"),
    "bad_text": (plain_text, "not readable as NIfTI"),
    "bad_nolabel": (missing_label, "no label"),
    "bad_spacing": (bad_spacing, "spacing"),
}


def singleton_4d(root: Path, name: str) -> None:
    """A 4D volume with a singleton 4th axis: accepted, squeezed to 3D."""
    write_pair(root, name, _image((*SHAPE, 1)), _label((*SHAPE, 1)))
