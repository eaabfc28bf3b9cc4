"""Builders of dataset profiles from shapes alone (no voxels), shared by the planning tests."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from minivess.data.schema import FLOAT32_BYTES, DatasetProfile, Shape3, Spacing3, VolumeStats

ProfileFactory = Callable[..., DatasetProfile]


def profile_from_shapes(
    shapes: Sequence[Shape3],
    spacings: Sequence[Spacing3] | None = None,
    names: Sequence[str] | None = None,
    data_dir: str = "generated",
) -> DatasetProfile:
    """A DatasetProfile whose statistics follow from ``shapes`` alone (float32 sizes)."""
    names = list(names or [f"v{i:03d}" for i in range(len(shapes))])
    spacings = list(spacings or [(1.0, 1.0, 1.0)] * len(shapes))
    vols = [
        VolumeStats(
            name=n,
            file=f"{n}.nii.gz",
            label_file=f"{n}_y.nii.gz",
            shape=s,
            spacing=sp,
            dtype="uint16",
            intensity_min=0,
            intensity_max=1,
            intensity_mean=0.5,
            intensity_std=0.1,
            intensity_p1=0,
            intensity_p99=1,
            foreground_ratio=0.05,
            bytes=FLOAT32_BYTES * s[0] * s[1] * s[2],
        )
        for n, s, sp in zip(names, shapes, spacings, strict=True)
    ]

    def per_axis(fn: Callable) -> tuple:
        return tuple(fn(s[a] for s in shapes) for a in range(3))

    lo = per_axis(min)
    hi = per_axis(max)
    return DatasetProfile(
        data_dir=data_dir,
        n_volumes=len(vols),
        min_shape=lo,
        max_shape=hi,
        median_shape=tuple(int(statistics.median(s[a] for s in shapes)) for a in range(3)),
        spacing_range=(
            tuple(min(sp[a] for sp in spacings) for a in range(3)),
            tuple(max(sp[a] for sp in spacings) for a in range(3)),
        ),
        is_anisotropic=False,
        total_size_gb=sum(v.bytes for v in vols) / 1e9,
        dataset_hash="0" * 16,
        volumes=vols,
    )
