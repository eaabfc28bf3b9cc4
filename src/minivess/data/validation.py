"""Checks that decide whether a volume may be trained on; each failure is a one-line reason.

The checks (seed §3, the gate before training):

* the file is a readable NIfTI-1 image, not truncated or corrupted (NIfTI-2 is refused);
* the volume is 3D; a 4D volume with a singleton 4th axis is squeezed (and says so),
  anything else with more or fewer axes is rejected; no axis has size 0;
* spacing (header zooms) is finite, positive and sane (≤ :data:`MAX_SPACING`);
* the image has no NaN or Inf;
* the pair exists, and image and label have the same shape and affine;
* label values are binary or within the classes the dataset declares.

A failing volume is quarantined as :class:`~minivess.data.schema.Rejected` and the rest of the
dataset goes on. :func:`validate_dataset` is the gate training calls before its first batch;
it raises :class:`~minivess.errors.DataError` only when no volume is usable.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minivess.data.discovery import DEFAULT_CLASSES
from minivess.data.schema import Rejected, Shape3, Spacing3, VolumePair

log = logging.getLogger(__name__)

#: Largest plausible voxel spacing, in the dataset's unit (µm for MiniVess: 10 cm).
MAX_SPACING = 1e5
#: Relative tolerance when comparing image and label affines.
AFFINE_RTOL, AFFINE_ATOL = 1e-4, 1e-4


class VolumeRejectedError(Exception):
    """A volume failed a check; ``str(err)`` is the one-line reason (internal to the data area)."""


@dataclass(frozen=True)
class HeaderInfo:
    """What a NIfTI header says, without reading voxels.

    Attributes:
        file: the path.
        shape: ``(x, y, z)`` voxels, after squeezing a singleton 4th axis.
        spacing: ``(x, y, z)`` header zooms (µm for MiniVess).
        dtype: on-disk data type, e.g. ``"uint16"``.
        affine: 4×4 voxel-to-world matrix.
        warnings: notes such as a squeezed 4th axis.
    """

    file: str
    shape: Shape3
    spacing: Spacing3
    dtype: str
    affine: np.ndarray
    warnings: list[str] = field(default_factory=list)


@dataclass
class LoadedVolume:
    """A volume that passed every check: arrays at native resolution, as stored on disk.

    ``image`` and ``label`` have shape ``header.shape``; ``image`` keeps its on-disk dtype
    (scaled to float only when the header has a scale slope), ``label`` is integer.
    """

    pair: VolumePair
    header: HeaderInfo
    image: np.ndarray
    label: np.ndarray
    warnings: list[str] = field(default_factory=list)


#: What reading a broken file raises (gzip/zlib for corrupted streams, EOF/ValueError for
#: truncated ones, nibabel's own errors for headers it cannot parse).
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    gzip.BadGzipFile,
)


def _nibabel_errors() -> tuple[type[BaseException], ...]:
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError, HeaderTypeError

    return (*_READ_ERRORS, ImageFileError, HeaderDataError, HeaderTypeError)


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _load_image(path: Path):  # -> nib.Nifti1Image
    import nibabel as nib

    try:
        img = nib.load(str(path), mmap=False)
    except _nibabel_errors() as err:
        raise VolumeRejectedError(
            f"not readable as NIfTI ({_short(err)}); re-export it as .nii.gz"
        ) from None
    if isinstance(img, nib.Nifti2Image):
        raise VolumeRejectedError(
            "NIfTI-2 file: minivess reads NIfTI-1; re-save it as NIfTI-1 "
            "(nibabel: nib.Nifti1Image(img.dataobj, img.affine).to_filename(...))"
        )
    if not isinstance(img, nib.Nifti1Image):
        raise VolumeRejectedError(f"{type(img).__name__} file, not NIfTI-1; convert it to .nii.gz")
    return img


def check_header(path: Path | str) -> tuple[HeaderInfo, object]:
    """Read and check the header of ``path`` (no voxels are read).

    Returns:
        ``(info, img)``: the checked header and the nibabel image (for a later voxel read).

    Raises:
        VolumeRejectedError: with a one-line reason.
    """
    path = Path(path)
    img = _load_image(path)
    shape = tuple(int(s) for s in img.shape)
    warnings: list[str] = []
    if len(shape) == 4 and shape[3] == 1:
        warnings.append(f"4D with a singleton 4th axis {shape}: squeezed to 3D")
        shape = shape[:3]
    elif len(shape) == 4:
        raise VolumeRejectedError(
            f"4D volume {shape} with {shape[3]} frames/channels: minivess expects one 3D "
            "volume per file; split it into 3D files"
        )
    elif len(shape) != 3:
        raise VolumeRejectedError(
            f"{len(shape)}D image {shape}: minivess expects a 3D volume (x, y, z)"
        )
    if min(shape) == 0:
        raise VolumeRejectedError(f"zero-sized axis in shape {shape}: the volume is empty")
    # float32 header zooms, shown with the digits they really have (0.684, not 0.68400001)
    zooms = tuple(float(f"{float(z):.7g}") for z in img.header.get_zooms()[:3])
    if not all(np.isfinite(z) and 0 < z <= MAX_SPACING for z in zooms):
        raise VolumeRejectedError(
            f"spacing {zooms} is not positive and sane (0 < s <= {MAX_SPACING:g}); "
            "fix pixdim[1:4] in the header"
        )
    info = HeaderInfo(
        file=str(path),
        shape=(shape[0], shape[1], shape[2]),
        spacing=(zooms[0], zooms[1], zooms[2]),
        dtype=str(img.get_data_dtype()),
        affine=np.asarray(img.affine, dtype=np.float64),
        warnings=warnings,
    )
    return info, img


def _read_voxels(img, info: HeaderInfo) -> np.ndarray:
    try:
        data = np.asanyarray(img.dataobj)
    except _nibabel_errors() as err:
        raise VolumeRejectedError(
            f"truncated or corrupted file ({_short(err)}); copy or export it again"
        ) from None
    if data.size != int(np.prod(info.shape)):
        raise VolumeRejectedError(
            f"truncated file: {data.size} voxels read, header says {info.shape}; copy it again"
        )
    return data.reshape(info.shape)


def check_pair_headers(pair: VolumePair) -> tuple[HeaderInfo, object, HeaderInfo, object]:
    """Header checks of a pair (no voxels read): both headers, same shape, same affine.

    Returns:
        ``(image info, image, label info, label)``; the nibabel images feed
        :func:`read_image` / :func:`read_label`.

    Raises:
        VolumeRejectedError: a reason about the label starts with ``label <file name>:``.
    """
    if pair.label is None:
        raise VolumeRejectedError("no label file for this image")
    info, img = check_header(pair.image)
    label_name = Path(pair.label).name
    try:
        label_info, label_img = check_header(pair.label)
    except VolumeRejectedError as err:
        raise VolumeRejectedError(f"label {label_name}: {err}") from None
    if label_info.shape != info.shape:
        raise VolumeRejectedError(
            f"label {label_name}: shape {label_info.shape} != image shape {info.shape}; "
            "the label does not belong to this image"
        )
    if not np.allclose(label_info.affine, info.affine, rtol=AFFINE_RTOL, atol=AFFINE_ATOL):
        diff = float(np.abs(label_info.affine - info.affine).max())
        raise VolumeRejectedError(
            f"label {label_name}: affine differs from the image's (max diff {diff:.3g}); "
            "re-save the label with the image's affine"
        )
    return info, img, label_info, label_img


def read_image(img, info: HeaderInfo) -> np.ndarray:
    """The image voxels, shape ``info.shape``, on-disk dtype; rejects truncation and NaN/Inf."""
    image = _read_voxels(img, info)
    if image.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise VolumeRejectedError(
                f"{bad} NaN/Inf voxel(s) in the image; fix or mask them before training"
            )
    return image


def read_label(
    label_img, label_info: HeaderInfo, classes: frozenset[int] = DEFAULT_CLASSES
) -> np.ndarray:
    """The label voxels as integers, shape ``label_info.shape``; rejects values not in
    ``classes``, truncation and NaN."""
    label_name = Path(label_info.file).name
    try:
        label = _read_voxels(label_img, label_info)
    except VolumeRejectedError as err:
        raise VolumeRejectedError(f"label {label_name}: {err}") from None
    return _check_label_values(label, classes, label_name)


def load_checked(pair: VolumePair, classes: frozenset[int] = DEFAULT_CLASSES) -> LoadedVolume:
    """Load ``pair`` at native resolution and run every check on it.

    Args:
        pair: the image and label paths.
        classes: allowed label values (default ``{0, 1}``).

    Returns:
        The checked volume (image and label both in memory).

    Raises:
        VolumeRejectedError: the first failing check's one-line reason; a reason about the
            label starts with ``label <file name>:``.
    """
    info, img, label_info, label_img = check_pair_headers(pair)
    image = read_image(img, info)
    label = read_label(label_img, label_info, classes)
    warnings = list(info.warnings) + [f"label: {w}" for w in label_info.warnings]
    return LoadedVolume(pair=pair, header=info, image=image, label=label, warnings=warnings)


def _check_label_values(label: np.ndarray, classes: frozenset[int], label_name: str) -> np.ndarray:
    """The label as an integer array; raises when a value is not one of ``classes``."""
    allowed = sorted(classes)
    if label.dtype.kind == "f":
        finite = np.isfinite(label)
        if not finite.all() or not np.array_equal(label[finite], np.round(label[finite])):
            raise VolumeRejectedError(
                f"label {label_name}: non-integer values; labels must hold classes {allowed}"
            )
        label = label.astype(np.int64)
    if label.dtype.kind in "ub" and label.dtype.itemsize <= 2:
        present = np.flatnonzero(np.bincount(label.ravel().astype(np.intp, copy=False)))
    else:
        present = np.unique(label)
    extra = sorted(set(int(v) for v in present) - set(classes))
    if extra:
        shown = ", ".join(str(v) for v in extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise VolumeRejectedError(
            f"label {label_name}: values {{{shown}}} outside the classes {allowed}; binarise "
            "the label or declare the classes in dataset.json 'labels'"
        )
    return label


def validate_pair(pair: VolumePair, classes: frozenset[int] = DEFAULT_CLASSES) -> Rejected | None:
    """None when ``pair`` passes every check, else its :class:`Rejected` entry."""
    try:
        load_checked(pair, classes)
    except VolumeRejectedError as err:
        return Rejected(file=pair.image, reason=str(err))
    return None


def validate_dataset(
    data_dir: Path | str,
    *,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[VolumePair], list[Rejected]]:
    """The gate before training: the usable pairs of ``data_dir`` and the quarantined files.

    It runs the profiler's scan (so an unchanged, already profiled dataset is not read again)
    and logs each rejection with its reason.

    Returns:
        ``(usable pairs, rejected)``.

    Raises:
        DataError: when no volume is usable, with the first reasons and the fix.
    """
    from minivess.data.profiler import profile_dataset

    profile = profile_dataset(data_dir, cache_dir=cache_dir, workers=workers, progress=progress)
    usable = [VolumePair(name=v.name, image=v.file, label=v.label_file) for v in profile.volumes]
    for item in profile.rejected:
        log.warning("quarantined %s: %s", item.file, item.reason)
    return usable, list(profile.rejected)
