"""The NIfTI reader training loads volumes with: integrity-checked, one line on failure.

MONAI's ``NibabelReader`` streams a ``.nii.gz`` through nibabel, which never checks the gzip
CRC: a file corrupted after the data gate would train on wrong voxels without a word. This
reader goes through the data gate's own reader (:func:`minivess.data.validation.read_checked`):
the whole file is inflated at once (ISA-L), its CRC and length verified, the inflated size
capped by what the header declares. A file that fails raises
:class:`~minivess.errors.DataError` naming it; :func:`minivess.training.train` reports that
one line.

Use it through :class:`LoadCheckedd` (``LoadImaged(reader=...)`` would fall back to nibabel).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data.image_reader import ImageReader
from monai.transforms import LoadImaged
from monai.utils import MetaKeys, SpaceKeys

from minivess.errors import DataError


class CheckedNiftiReader(ImageReader):
    """A MONAI ``ImageReader`` for NIfTI-1 (``.nii`` / ``.nii.gz``) that verifies integrity.

    ``get_data`` returns the voxels in their on-disk dtype (float32 when the header scales
    intensities), shape ``(x, y, z)`` as stored, and MONAI's metadata (``affine``,
    ``original_affine``, ``spatial_shape``, ``original_channel_dim`` = no channel).
    """

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(str(n).endswith((".nii", ".nii.gz")) for n in names)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        from minivess.data.validation import (
            VolumeRejectedError,
            read_checked,
            rejection_reason,
        )

        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        out = []
        for name in names:
            try:
                out.append(read_checked(Path(name)))
            except VolumeRejectedError as err:
                raise DataError(
                    f"{name}: {err} (it changed after the data gate checked it; rerun and "
                    "the gate quarantines it)"
                ) from None
            except (MemoryError, ValueError, TypeError) as err:
                raise DataError(f"{name}: {rejection_reason(err)}") from None
        return out if len(out) > 1 else out[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        items = img if isinstance(img, list) else [img]
        arrays = []
        meta: dict[str, Any] = {}
        for array, info in items:
            arrays.append(array)
            if not meta:
                meta = {
                    MetaKeys.AFFINE: info.affine.copy(),
                    MetaKeys.ORIGINAL_AFFINE: info.affine.copy(),
                    MetaKeys.SPATIAL_SHAPE: np.asarray(info.shape),
                    MetaKeys.SPACE: SpaceKeys.RAS,
                    MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
                    "pixdim": np.asarray([1.0, *info.spacing, 1, 1, 1, 1]),
                }
        if len(arrays) == 1:
            return arrays[0], meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta


class LoadCheckedd(LoadImaged):
    """``LoadImaged`` that reads only with :class:`CheckedNiftiReader`.

    Given a reader at construction, MONAI's ``LoadImage`` falls back to its other readers
    when that one raises, which would let nibabel load the corrupted file the check refused;
    here the reader is passed per call, so a failed check is final.
    """

    def __init__(self, keys: Any, **kwargs: Any) -> None:
        super().__init__(keys=keys, image_only=True, **kwargs)
        self.checked_reader = CheckedNiftiReader()

    def __call__(self, data: Any, reader: ImageReader | None = None) -> Any:
        return super().__call__(data, reader or self.checked_reader)
