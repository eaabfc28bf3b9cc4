"""Typed views of the dataset: volume pairs, per-volume statistics and the dataset profile.

Conventions used everywhere in minivess:
    * ``shape`` is ``(x, y, z)`` in voxels, in the NIfTI array order (no transposition).
    * ``spacing`` is ``(x, y, z)`` in µm (the unit MiniVess stores; other datasets keep theirs).
    * ``bytes`` / ``total_size_gb`` are float32, uncompressed (what a cached tensor costs).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Shape3 = tuple[int, int, int]
Spacing3 = tuple[float, float, float]

#: Bytes per voxel of the cached training representation (float32).
FLOAT32_BYTES = 4


class VolumePair(BaseModel):
    """One image and its label, as found by discovery. ``label`` is None when it is missing."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="case id, e.g. 'mv01'")
    image: str = Field(description="image path")
    label: str | None = Field(default=None, description="label path, None if missing")


class VolumeStats(BaseModel):
    """Statistics of one accepted volume, at native resolution."""

    model_config = ConfigDict(frozen=True)

    name: str
    file: str
    label_file: str | None
    shape: Shape3
    spacing: Spacing3
    dtype: str
    intensity_min: float
    intensity_max: float
    intensity_mean: float
    intensity_std: float
    intensity_p1: float
    intensity_p99: float
    foreground_ratio: float = Field(description="fraction of label voxels > 0")
    bytes: int = Field(description="float32 uncompressed size of the image, in bytes")
    warnings: list[str] = Field(default_factory=list)
    content_hash: str = Field(
        default="", description="sha256 of the image and label files (profiler cache key)"
    )


class Rejected(BaseModel):
    """A quarantined file and the one-line reason."""

    model_config = ConfigDict(frozen=True)

    file: str
    reason: str


class DatasetProfile(BaseModel):
    """What the planner and the QC report know about a dataset."""

    model_config = ConfigDict(frozen=True)

    data_dir: str
    n_volumes: int
    min_shape: Shape3
    max_shape: Shape3
    median_shape: Shape3
    spacing_range: tuple[Spacing3, Spacing3] = Field(description="(min per axis, max per axis)")
    is_anisotropic: bool
    total_size_gb: float
    warnings: list[str] = Field(default_factory=list)
    rejected: list[Rejected] = Field(default_factory=list)
    dataset_hash: str
    volumes: list[VolumeStats] = Field(default_factory=list)
    #: Book-keeping of the call that built this profile; not part of the JSON output.
    n_scanned: int = Field(
        default=0, exclude=True, description="volumes whose voxels this call read (0: all cached)"
    )
    n_cached: int = Field(
        default=0, exclude=True, description="volumes this call took from the profile cache"
    )

    def volume(self, name: str) -> VolumeStats:
        """The stats of the volume called ``name``."""
        for v in self.volumes:
            if v.name == name:
                return v
        raise KeyError(f"no volume named {name!r} in the profile of {self.data_dir}")
