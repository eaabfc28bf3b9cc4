"""Safe reading of uploaded NIfTI volumes and writing of masks.

Every check that can be made from the header is made before any voxel array is allocated:
file type (by content, never by the client's file name), dimensionality, declared voxel count
(a decompression-bomb guard: a tiny ``.nii.gz`` may declare gigabytes) and data type. Only then
is the body decompressed, with a hard cap on the bytes read, and checked for NaN/inf.
Each rejection is an :class:`InputRejected` with an HTTP status, a short code and a message that
says what to send instead.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minivess.errors import MinivessError

_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI1_HDR = 348
_NIFTI2_HDR = 540
#: Bytes of header we decompress to inspect a volume (NIfTI-2 header + extension flag).
_HEADER_PEEK = 544
#: Largest accepted ``vox_offset`` (header + extensions), bytes. Real NIfTI extensions (DICOM
#: tags, JSON sidecars) are kilobytes; a bomb declares gigabytes of padding before the voxels.
MAX_VOX_OFFSET = 1024 * 1024
#: Largest accepted |pixdim| / |affine entry| (mm, µm or m: a spacing of a kilometre is a typo).
MAX_SPACING = 1.0e6
#: Factor from the header's spatial unit to µm.
_UNIT_TO_UM = {"micron": 1.0, "mm": 1000.0, "meter": 1.0e6}


class InputRejected(MinivessError):
    """A request the service refuses; carries the HTTP ``status`` and a short ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict[str, str | int]:
        """The JSON body of the 4xx response."""
        return {"error": self.code, "detail": self.message, "status": self.status}


@dataclass(frozen=True)
class HeaderInfo:
    """What the header declares. ``shape`` (x, y, z) voxels, ``spacing_um`` (x, y, z) µm,
    ``spacing`` (x, y, z) in the header's own units (what training's ``target_spacing`` uses)."""

    version: int
    shape: tuple[int, int, int]
    dtype: np.dtype
    spacing_um: tuple[float, float, float]
    spacing_unit_assumed: bool
    data_bytes: int
    spacing: tuple[float, float, float]
    vox_offset: int

    @property
    def n_voxels(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Volume:
    """A validated volume: ``array`` float32 (x, y, z), its ``affine`` and header facts."""

    array: np.ndarray
    affine: np.ndarray
    info: HeaderInfo
    header: object  # the nibabel header, reused when writing the mask

    @property
    def voxel_volume_um3(self) -> float:
        return float(math.prod(self.info.spacing_um))


def _peek(raw_head: bytes, path: Path) -> tuple[bool, bytes]:
    """(is_gzip, first header bytes) of ``path``; decompresses at most ``_HEADER_PEEK`` bytes."""
    if raw_head[:2] == _GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as fh:
                return True, fh.read(_HEADER_PEEK)
        except (OSError, EOFError, zlib.error) as err:
            raise InputRejected(
                400, "corrupt_gzip", f"the upload is gzip but cannot be decompressed ({err})"
            ) from None
    return False, raw_head


def _header_class(head: bytes) -> tuple[int, Any]:
    import nibabel as nib

    for order in ("<", ">"):
        if len(head) >= 4:
            size = int(np.frombuffer(head[:4], dtype=f"{order}i4")[0])
            if size == _NIFTI1_HDR and head[344:347] == b"n+1":
                return 1, nib.Nifti1Header
            if size == _NIFTI2_HDR and head[4:7] == b"n+2":
                return 2, nib.Nifti2Header
    raise InputRejected(
        415,
        "not_nifti",
        "the upload is not a single-file NIfTI volume (.nii or .nii.gz); convert it with "
        "nibabel or 3D Slicer and send it in the multipart field 'volume'",
    )


def _bad_header(field: str, detail: str) -> InputRejected:
    return InputRejected(
        400, "bad_header", f"the NIfTI header field {field} {detail}; rewrite the file with nibabel"
    )


def _check_fields(header: Any, version: int) -> None:
    """Bound every header field the reader uses, before any voxel byte is read or allocated.

    Raises:
        InputRejected: 400 ``bad_header`` naming the field.
    """
    hdr_size = _NIFTI1_HDR if version == 1 else _NIFTI2_HDR
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset != int(offset):
        raise _bad_header("vox_offset", f"is {offset}, not a whole number of bytes")
    if not hdr_size <= offset <= MAX_VOX_OFFSET:
        raise _bad_header(
            "vox_offset",
            f"is {offset:.0f} bytes; it must lie between the header size ({hdr_size}) and "
            f"{MAX_VOX_OFFSET} (header plus extensions)",
        )
    dim = [int(d) for d in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise _bad_header("dim[0]", f"is {dim[0]}; a 3D volume has 3 (the standard allows 1-7)")
    if any(d < 0 for d in dim[1 : dim[0] + 1]):
        raise _bad_header("dim", f"has a negative size: {dim[1 : dim[0] + 1]}")
    bitpix = int(header["bitpix"])
    itemsize = header.get_data_dtype().itemsize
    if bitpix != 8 * itemsize:
        raise _bad_header("bitpix", f"is {bitpix}, but the datatype has {8 * itemsize} bits")
    pixdim = [float(p) for p in header["pixdim"][1:4]]
    if not all(math.isfinite(p) and 0 < abs(p) <= MAX_SPACING for p in pixdim):
        raise _bad_header("pixdim[1:4]", f"is {pixdim}; voxel spacings must be finite and > 0")
    for name in ("scl_slope", "scl_inter"):
        value = float(header[name])
        if math.isinf(value):  # NaN means "no scaling" in the NIfTI standard
            raise _bad_header(name, f"is {value}")
    affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    if not np.isfinite(affine).all() or np.abs(affine).max() > MAX_SPACING * 2**16:
        raise _bad_header("qform/sform", "gives a non-finite or absurd affine")


def inspect_header(path: Path, max_voxels: int) -> HeaderInfo:
    """Read and check the NIfTI header of ``path`` without touching the voxel data.

    Args:
        path: the uploaded file (any name; the type is detected from its bytes).
        max_voxels: largest accepted x*y*z.

    Raises:
        InputRejected: 415 not NIfTI; 422 not 3D or unsupported dtype; 413 too many voxels.
    """
    path = Path(path)
    with path.open("rb") as fh:
        raw_head = fh.read(_HEADER_PEEK)
    _, head = _peek(raw_head, path)
    version, header_cls = _header_class(head)
    from nibabel.spatialimages import HeaderDataError

    try:
        header = header_cls.from_fileobj(io.BytesIO(head), check=True)
    except (HeaderDataError, ValueError) as err:
        raise InputRejected(400, "bad_header", f"the NIfTI header is invalid ({err})") from None
    _check_fields(header, version)
    shape = tuple(int(s) for s in header.get_data_shape())
    extra = shape[3:]
    if len(shape) < 3 or any(s != 1 for s in extra):
        raise InputRejected(
            422,
            "not_3d",
            f"expected one 3D volume (x, y, z), got shape {shape}; send one channel/timepoint "
            "per request (e.g. img.slicer[..., 0])",
        )
    if any(s < 1 for s in shape[:3]):
        raise InputRejected(422, "empty_volume", f"the volume has an empty axis: {shape}")
    shape3 = (shape[0], shape[1], shape[2])
    n = math.prod(shape3)
    if n > max_voxels:
        raise InputRejected(
            413,
            "too_many_voxels",
            f"the header declares {shape3} = {n} voxels, over the limit of {max_voxels}; crop "
            "the volume or raise max_voxels (MINIVESS_SERVE_MAX_VOXELS)",
        )
    dtype = header.get_data_dtype()
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise InputRejected(
            422, "bad_dtype", f"voxel type {dtype} is not a real scalar; send int or float data"
        )
    zooms = tuple(float(z) for z in header.get_zooms()[:3])
    unit = header.get_xyzt_units()[0]
    factor = _UNIT_TO_UM.get(unit, 1.0)
    return HeaderInfo(
        version=version,
        shape=shape3,
        dtype=dtype,
        spacing_um=(zooms[0] * factor, zooms[1] * factor, zooms[2] * factor),
        spacing_unit_assumed=unit not in _UNIT_TO_UM,
        data_bytes=n * dtype.itemsize,
        vox_offset=int(header["vox_offset"]),
        spacing=(zooms[0], zooms[1], zooms[2]),
    )


def load_volume(path: Path, max_voxels: int) -> Volume:
    """Validate and load ``path`` as a float32 (x, y, z) array.

    The data read is capped at the size the checked header declares, so a compressed file
    cannot expand beyond ``max_voxels`` voxels.

    Raises:
        InputRejected: see :func:`inspect_header`; 400 truncated/corrupt; 422 NaN or inf.
    """
    import nibabel as nib

    info = inspect_header(path, max_voxels)
    expected = info.vox_offset + info.data_bytes
    with Path(path).open("rb") as fh:
        is_gz = fh.read(2) == _GZIP_MAGIC
    try:
        if is_gz:
            with gzip.open(path, "rb") as fh:
                blob = fh.read(expected)
        else:
            with Path(path).open("rb") as fh:
                blob = fh.read(expected)
    except (OSError, EOFError, zlib.error) as err:
        raise InputRejected(400, "corrupt", f"the volume cannot be read ({err})") from None
    if len(blob) < expected:
        raise InputRejected(
            400,
            "truncated",
            f"the volume is truncated: the header declares {expected} bytes, the file has "
            f"{len(blob)}",
        )
    image_cls = nib.Nifti1Image if info.version == 1 else nib.Nifti2Image
    try:
        img = image_cls.from_bytes(blob)
        array = np.asarray(img.get_fdata(dtype=np.float32)).reshape(info.shape)
    except (ValueError, OSError) as err:
        raise InputRejected(400, "corrupt", f"the volume cannot be decoded ({err})") from None
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputRejected(
            422,
            "not_finite",
            f"the volume contains {bad} NaN/inf voxels; replace them (e.g. np.nan_to_num) first",
        )
    return Volume(array=array, affine=img.affine.copy(), info=info, header=img.header)


def mask_nifti_gz(mask: np.ndarray, like: Volume) -> bytes:
    """``mask`` (x, y, z) as .nii.gz bytes, uint8, with the input's affine, spacing and units.

    Built in memory (gzip level 1: masks compress well and quickly); nothing touches the disk.
    """
    import nibabel as nib

    if mask.shape != like.info.shape:
        raise ValueError(f"mask shape {mask.shape} != volume shape {like.info.shape}")
    img = nib.Nifti1Image(np.ascontiguousarray(mask, dtype=np.uint8), like.affine)
    src: Any = like.header
    img.header.set_zooms(src.get_zooms()[:3])
    img.header.set_xyzt_units(*src.get_xyzt_units())
    sform, scode = src.get_sform(coded=True)
    qform, qcode = src.get_qform(coded=True)
    img.set_sform(like.affine if sform is None else sform, int(scode) or 2)
    img.set_qform(like.affine if qform is None else qform, int(qcode) or 2)
    img.set_data_dtype(np.uint8)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1, mtime=0) as gz:
        gz.write(img.to_bytes())
    return buf.getvalue()
