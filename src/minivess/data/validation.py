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
dataset goes on. The dataset gate training calls before its first batch is
:func:`minivess.data.gate.validate_dataset` (it runs the profiler, which runs these checks).
"""

from __future__ import annotations

import gzip
import logging
import math
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
    """What a NIfTI-1 header says, without reading voxels.

    Attributes:
        file: the path.
        shape: ``(x, y, z)`` voxels, after squeezing a singleton 4th axis.
        spacing: ``(x, y, z)`` header zooms (µm for MiniVess).
        dtype: on-disk data type, e.g. ``"uint16"``.
        affine: 4×4 voxel-to-world matrix (the header's best affine: sform, else qform).
        warnings: notes such as a squeezed 4th axis.
        disk_shape: the shape as stored (e.g. ``(x, y, z, 1)``).
        data_offset: byte offset of the voxels in the (decompressed) file.
        disk_dtype: the stored dtype with its byte order, e.g. ``"<u2"``.
        scaling: ``(slope, intercept)`` when the header scales intensities, else None.
    """

    file: str
    shape: Shape3
    spacing: Spacing3
    dtype: str
    affine: np.ndarray
    warnings: list[str] = field(default_factory=list)
    disk_shape: tuple[int, ...] = ()
    data_offset: int = 352
    scaling: tuple[float, float] | None = None
    disk_dtype: str = ""


@dataclass
class LoadedVolume:
    """A volume that passed every check: arrays at native resolution, as stored on disk.

    ``image`` and ``label`` have shape ``header.shape``; ``image`` keeps its on-disk dtype
    (float only when the header scales intensities), ``label`` is integer.
    """

    pair: VolumePair
    header: HeaderInfo
    image: np.ndarray
    label: np.ndarray
    warnings: list[str] = field(default_factory=list)


#: What reading a broken file raises: gzip/zlib for corrupted streams (a bad CRC included),
#: EOF for truncated ones, OSError for unreadable files.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, gzip.BadGzipFile)
NIFTI1_HEADER_BYTES, NIFTI2_HEADER_BYTES = 348, 540


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _open(path: Path):
    """The decompressed byte stream of ``path`` (gzip when the name ends in ``.gz``)."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _read_header(path: Path):  # -> nib.Nifti1Header
    """Parse the NIfTI-1 header of ``path`` as stored (nibabel's silent fixes are off)."""
    import nibabel as nib
    from nibabel.spatialimages import HeaderDataError

    try:
        with _open(path) as fh:
            head = fh.read(NIFTI2_HEADER_BYTES)
    except _READ_ERRORS as err:
        raise VolumeRejectedError(
            f"not readable as NIfTI ({_short(err)}); re-export it as .nii.gz"
        ) from None
    sizes = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    if NIFTI2_HEADER_BYTES in sizes:
        raise VolumeRejectedError(
            "NIfTI-2 file: minivess reads NIfTI-1; re-save it as NIfTI-1 "
            "(nibabel: nib.Nifti1Image(img.dataobj, img.affine).to_filename(...))"
        )
    if len(head) < NIFTI1_HEADER_BYTES or NIFTI1_HEADER_BYTES not in sizes:
        raise VolumeRejectedError(
            "not readable as NIfTI (no NIfTI-1 header at the start of the file); "
            "re-export it as .nii.gz"
        )
    try:
        hdr = nib.Nifti1Header(head[:NIFTI1_HEADER_BYTES], check=False)
    except (HeaderDataError, ValueError, KeyError) as err:
        raise VolumeRejectedError(
            f"not readable as NIfTI (bad header: {_short(err)}); re-export it as .nii.gz"
        ) from None
    try:
        hdr.get_data_dtype()
    except KeyError:
        raise VolumeRejectedError(
            f"bad header: unknown datatype code {int(hdr['datatype'])}; save it as an "
            "integer or float32 volume"
        ) from None
    except (HeaderDataError, ValueError) as err:
        raise VolumeRejectedError(
            f"not readable as NIfTI (bad header: {_short(err)}); re-export it as .nii.gz"
        ) from None
    if bytes(hdr["magic"]).rstrip(b"\x00") != b"n+1":
        raise VolumeRejectedError(
            f"NIfTI header magic {bytes(hdr['magic'])!r}, not a single-file NIfTI-1 (n+1); "
            "save image and header together as .nii.gz"
        )
    return hdr


def check_header(path: Path | str) -> HeaderInfo:
    """Read and check the header of ``path`` (no voxels are read).

    Raises:
        VolumeRejectedError: with a one-line reason (not NIfTI-1, NIfTI-2, not 3D, a
            zero-sized axis, a non-positive or absurd spacing).
    """
    path = Path(path)
    hdr = _read_header(path)
    ndim = int(hdr["dim"][0])
    dims = [int(d) for d in hdr["dim"][1 : 1 + ndim]] if 1 <= ndim <= 7 else []
    if not dims:
        raise VolumeRejectedError(
            f"header dim[0] = {ndim} is not a number of axes in 1..7; fix dim in the header"
        )
    if min(dims) < 0:
        raise VolumeRejectedError(
            f"negative size in header dims {tuple(dims)}: the header is corrupted; "
            "export the volume again"
        )
    disk_shape = tuple(dims)
    shape = disk_shape
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
    zooms = tuple(float(f"{float(z):.7g}") for z in hdr["pixdim"][1:4])
    if not all(np.isfinite(z) and 0 < z <= MAX_SPACING for z in zooms):
        raise VolumeRejectedError(
            f"spacing {zooms} is not positive and sane (0 < s <= {MAX_SPACING:g}); "
            "fix pixdim[1:4] in the header"
        )
    dtype = hdr.get_data_dtype()
    _check_dtype(dtype)
    slope, inter = hdr.get_slope_inter()
    scaling = None
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        scaling = (float(slope), float(inter or 0.0))
    offset = int(hdr.get_data_offset())
    if offset < NIFTI1_HEADER_BYTES:
        raise VolumeRejectedError(
            f"header vox_offset {offset} points inside the header; fix vox_offset (>= 352)"
        )
    affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
    warnings += affine_notes(affine)
    return HeaderInfo(
        file=str(path),
        shape=(shape[0], shape[1], shape[2]),
        spacing=(zooms[0], zooms[1], zooms[2]),
        dtype=str(dtype.newbyteorder("=")),
        affine=affine,
        warnings=warnings,
        disk_shape=disk_shape,
        data_offset=offset,
        scaling=scaling,
        disk_dtype=dtype.str,
    )


#: dtype kinds a volume may hold: unsigned/signed integers, floats, booleans.
_REAL_KINDS = "uifb"


def _check_dtype(dtype: np.dtype) -> None:
    """Reject on-disk dtypes minivess cannot train on (complex, RGB/RGBA, unknown)."""
    if dtype.kind == "c":
        raise VolumeRejectedError(
            f"complex image ({dtype}): minivess trains on real intensities; save the "
            "magnitude (np.abs) or the real part as float32"
        )
    if dtype.names:
        raise VolumeRejectedError(
            f"colour image ({'/'.join(dtype.names)} channels): minivess expects one grey "
            "value per voxel; convert it to greyscale"
        )
    if dtype.kind not in _REAL_KINDS or dtype.itemsize == 0:
        raise VolumeRejectedError(
            f"unsupported voxel type {dtype}: save it as an integer or float32 volume"
        )


#: Below this, an affine's off-axis direction component counts as zero (not oblique).
OBLIQUE_TOL = 1e-3


def affine_notes(affine: np.ndarray) -> list[str]:
    """Notes for an oblique (rotated) or sheared voxel-to-world ``affine`` (4×4).

    Training reads voxels as stored, so these only matter when the world orientation does
    (resampling, overlays in a viewer); they are notes, not rejections.

    Example:
        >>> affine_notes(np.diag([0.7, 0.7, 5.0, 1.0]))
        []
    """
    axes = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(axes, axis=0)
    if not np.all(np.isfinite(axes)) or np.any(norms == 0):
        return ["affine is singular or not finite: world coordinates are undefined"]
    unit = axes / norms
    notes = []
    cos = np.abs(unit.T @ unit - np.eye(3)).max()
    if cos > OBLIQUE_TOL:
        angle = 90.0 - float(np.degrees(np.arccos(min(1.0, cos))))
        notes.append(f"sheared affine: voxel axes are {angle:.1f}° off perpendicular")
    off_axis = float(1.0 - np.abs(unit).max(axis=0).min())
    if off_axis > OBLIQUE_TOL:
        deg = float(np.degrees(np.arccos(np.abs(unit).max(axis=0).min())))
        notes.append(f"oblique affine: a voxel axis is {deg:.1f}° off the world axes")
    return notes


def _inflater():  # -> (decompress object, errors it raises)
    """A gzip inflater: ISA-L's (about 2.5× faster) when ``isal`` is installed, else zlib's."""
    try:
        from isal import isal_zlib
    except ImportError:  # isal is a dependency, but the reader must not need it
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), (zlib.error,)
    return isal_zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), (isal_zlib.error, zlib.error)


#: Bytes a file may inflate to beyond what its header declares (header, extensions, padding):
#: ``INFLATE_MARGIN_BYTES`` plus ``INFLATE_MARGIN_FRACTION`` of the declared size.
INFLATE_MARGIN_BYTES = 1 << 20
INFLATE_MARGIN_FRACTION = 0.01


class InflateLimitError(ValueError):
    """A compressed file inflates to more bytes than its header allows."""


def inflate_cap(declared: int) -> int:
    """The most bytes a file declaring ``declared`` bytes (header + voxels) may inflate to."""
    return declared + INFLATE_MARGIN_BYTES + int(declared * INFLATE_MARGIN_FRACTION)


def _decompressed(path: Path, cap: int | None = None) -> bytes | bytearray:
    """All bytes of ``path``, gunzipped in one call when it is a single-member gzip.

    The inflater checks the gzip trailer (CRC32 and length), so a corrupted block is caught
    even when it still inflates. Multi-member gzip files fall back to the streaming reader.
    With ``cap``, no more than ``cap`` bytes are ever inflated (a small file that inflates to
    gigabytes, a "zip bomb", costs at most ``cap`` bytes of memory).

    Raises:
        InflateLimitError: the file holds more than ``cap`` bytes.
        OSError / EOFError / zlib.error (and isal's equivalent) on unreadable, truncated or
        corrupted files.
    """
    raw = path.read_bytes()
    if not path.name.endswith(".gz"):
        if cap is not None and len(raw) > cap:
            raise InflateLimitError(f"{len(raw)} bytes, more than the header declares")
        return raw
    inflater, errors = _inflater()
    try:
        out = inflater.decompress(raw, cap + 1) if cap is not None else inflater.decompress(raw)
    except errors as err:
        raise zlib.error(str(err)) from None
    if cap is not None and len(out) > cap:
        raise InflateLimitError(f"inflates to more than {cap} bytes")
    if not inflater.eof:
        raise EOFError("compressed file ended before the end-of-stream marker")
    if inflater.unused_data.strip(b"\x00"):  # another gzip member follows
        with gzip.open(path, "rb") as fh:
            data = fh.read(cap + 1) if cap is not None else fh.read()
        if cap is not None and len(data) > cap:
            raise InflateLimitError(f"inflates to more than {cap} bytes")
        return data
    return out


def _read_voxels(info: HeaderInfo) -> np.ndarray:
    """The voxels of ``info.file`` (read-only array, Fortran order, shape ``info.shape``).

    The whole file is inflated at once (faster than streaming it through ``gzip``), and
    the gzip CRC is verified, so corruption cannot pass as data.
    """
    path = Path(info.file)
    dtype = np.dtype(info.dtype)
    disk_dtype = np.dtype(info.disk_dtype or info.dtype)  # byte order as stored
    nbytes = math.prod(info.disk_shape) * dtype.itemsize
    cap = inflate_cap(info.data_offset + nbytes)
    try:
        buf = _decompressed(path, cap)
    except InflateLimitError as err:
        raise VolumeRejectedError(
            f"holds more data than its header declares ({_short(err)}; header: "
            f"{info.disk_shape} {dtype}); a corrupted header or a decompression bomb, "
            "export it again"
        ) from None
    except _READ_ERRORS as err:
        raise VolumeRejectedError(
            f"truncated or corrupted file ({_short(err)}); copy or export it again"
        ) from None
    got = len(buf) - info.data_offset
    if got < nbytes:
        raise VolumeRejectedError(
            f"truncated file: {max(got, 0)} of {nbytes} voxel bytes; copy or export it again"
        )
    data = np.ndarray(
        info.disk_shape, dtype=disk_dtype, buffer=buf, offset=info.data_offset, order="F"
    )
    if disk_dtype != dtype:
        data = data.astype(dtype)
    data = data.reshape(info.shape, order="F")
    if info.scaling is not None:
        slope, inter = info.scaling
        data = data.astype(np.float32) * np.float32(slope) + np.float32(inter)
    return data


def check_pair_headers(pair: VolumePair) -> tuple[HeaderInfo, HeaderInfo]:
    """Header checks of a pair (no voxels read): both headers, same shape, same affine.

    Returns:
        ``(image header, label header)``, which :func:`read_image` / :func:`read_label` read.

    Raises:
        VolumeRejectedError: a reason about the label starts with ``label <file name>:``.
    """
    if pair.label is None:
        raise VolumeRejectedError("no label file for this image")
    info = check_header(pair.image)
    label_name = Path(pair.label).name
    try:
        label_info = check_header(pair.label)
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
    return info, label_info


def read_image(info: HeaderInfo) -> np.ndarray:
    """The image voxels, shape ``info.shape``, on-disk dtype; rejects truncation and NaN/Inf."""
    image = _read_voxels(info)
    if image.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise VolumeRejectedError(
                f"{bad} NaN/Inf voxel(s) in the image; fix or mask them before training"
            )
    return image


def read_checked(path: Path | str) -> tuple[np.ndarray, HeaderInfo]:
    """Header check, then the voxels with the gzip CRC verified: what training reads.

    Returns:
        ``(voxels of shape header.shape, header)``.

    Raises:
        VolumeRejectedError: the one-line reason (corrupted, truncated, bad header, ...).
    """
    info = check_header(path)
    return read_image(info), info


def read_label(label_info: HeaderInfo, classes: frozenset[int] = DEFAULT_CLASSES) -> np.ndarray:
    """The label voxels as integers, shape ``label_info.shape``; rejects values not in
    ``classes``, truncation and NaN."""
    label_name = Path(label_info.file).name
    try:
        label = _read_voxels(label_info)
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
    info, label_info = check_pair_headers(pair)
    image = read_image(info)
    label = read_label(label_info, classes)
    warnings = list(info.warnings) + [f"label: {w}" for w in label_info.warnings]
    return LoadedVolume(pair=pair, header=info, image=image, label=label, warnings=warnings)


def _check_label_values(label: np.ndarray, classes: frozenset[int], label_name: str) -> np.ndarray:
    """The label as an integer array; raises when a value is not one of ``classes``."""
    allowed = sorted(classes)
    if label.dtype.kind == "f":
        finite = np.isfinite(label)
        if (
            not finite.all()
            or not np.array_equal(label[finite], np.round(label[finite]))
            or (label.size and float(np.abs(label).max()) > 2**31)
        ):
            raise VolumeRejectedError(
                f"label {label_name}: non-integer values; labels must hold classes {allowed}"
            )
        label = label.astype(np.int64)
    top = int(label.max()) if label.size else 0
    bottom = 0 if label.dtype.kind == "u" or not label.size else int(label.min())
    if bottom >= 0 and set(range(top + 1)) <= set(classes):
        return label  # every value in 0..max is a declared class: no need to count
    present = _present_values(label)
    extra = sorted(set(int(v) for v in present) - set(classes))
    if extra:
        shown = ", ".join(str(v) for v in extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise VolumeRejectedError(
            f"label {label_name}: values {{{shown}}} outside the classes {allowed}; binarise "
            "the label or declare the classes in dataset.json 'labels'"
        )
    return label


def _present_values(label: np.ndarray) -> np.ndarray:
    """Distinct values of an integer label, counted z-slab by z-slab (no full-size copy)."""
    if label.dtype.kind not in "ub" or label.dtype.itemsize > 2:
        return np.unique(label)
    seen = np.zeros(1 << (8 * label.dtype.itemsize), dtype=bool)
    step = max(1, (1 << 22) // max(1, label.shape[0] * label.shape[1]))
    for z0 in range(0, label.shape[2], step):
        slab = label[:, :, z0 : z0 + step].ravel(order="K")
        counts = np.bincount(slab, minlength=seen.size)
        seen |= counts > 0
    return np.flatnonzero(seen)


def rejection_reason(err: BaseException) -> str:
    """The one-line quarantine reason for any error raised while reading or checking a file.

    Per-file isolation: whatever goes wrong with one file (a check, a header nibabel cannot
    parse, a dtype numpy cannot view, memory) quarantines that file, and the run goes on.
    """
    if isinstance(err, VolumeRejectedError):
        return str(err)
    if isinstance(err, MemoryError):
        return (
            "not enough memory to read it (the header declares more voxels than fit); "
            "check the header's dims or read it on a larger machine"
        )
    return f"not readable ({type(err).__name__}: {_short(err)}); check or export the file again"


def validate_pair(pair: VolumePair, classes: frozenset[int] = DEFAULT_CLASSES) -> Rejected | None:
    """None when ``pair`` passes every check, else its :class:`Rejected` entry."""
    try:
        load_checked(pair, classes)
    except Exception as err:  # per-file isolation: any failure quarantines this pair only
        return Rejected(file=pair.image, reason=rejection_reason(err))
    return None
