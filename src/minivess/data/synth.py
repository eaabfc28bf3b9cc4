"""A deterministic MiniVess-like dataset: the embedded default that works offline.

MiniVess (70 two-photon volumes of rodent cortex vasculature) cannot be downloaded here, so
:func:`synthesize` writes a look-alike in the MiniVess release layout::

    OUT_DIR/raw/mv01.nii.gz     image, uint16, background + depth attenuation + noise
    OUT_DIR/seg/mv01_y.nii.gz   label, uint8 {0, 1}: branching tubes of varying radius
    OUT_DIR/json/mv01.json      metadata (shape, spacing, seed, foreground ratio)

The NIfTI affine and header zooms carry the spacing, ``(x, y, z)`` in µm (xyz units: micron).

Two scales:
    * ``full``: 70 volumes ``mv01..mv70``, 512×512×Z with Z in [5, 110] (median ≈ 22, one Z=5,
      one Z=110); xy spacing ≈ 0.3–1.2 µm, z coarser; ``mv02`` is a spacing outlier (4.97 µm in
      x and y), like the real mv02.
    * ``small`` (the default): 6 volumes, 64–128 px in xy, Z ≤ 24 with one Z=5 (the case that
      breaks naive patch sizes), so the whole main job runs in minutes on 2 CPU cores.

:func:`volume_specs` is the pure, cheap part (names, shapes, spacings); tests of dataset-level
statistics can use it without writing a single voxel.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Literal

import numpy as np

from minivess.data.schema import Shape3, Spacing3, VolumePair

log = logging.getLogger(__name__)

Scale = Literal["small", "full"]

#: Layout folders of the MiniVess release.
RAW_DIR, SEG_DIR, JSON_DIR = "raw", "seg", "json"
#: Suffix of a label file in the MiniVess layout (``mv01_y.nii.gz``).
LABEL_SUFFIX = "_y"
NIFTI_EXT = ".nii.gz"

#: Index (0-based) of the volume that gets the spacing outlier, and its xy spacing in µm.
OUTLIER_INDEX, OUTLIER_SPACING_UM = 1, 4.97
#: Index of the thinnest (Z=5) and, at full scale, the thickest (Z=110) volume.
MIN_Z_INDEX, MAX_Z_INDEX = 2, 3
#: Radius of a tree's root vessel and the radius below which a branch stops, in µm.
ROOT_RADIUS_UM, MIN_RADIUS_UM = (3.0, 10.0), 1.5
FULL_N, FULL_XY, FULL_Z_RANGE, FULL_Z_MEDIAN = 70, 512, (5, 110), 22
SMALL_N, SMALL_XY_CHOICES, SMALL_Z_RANGE, SMALL_Z_MEDIAN = 6, (64, 80, 96, 112, 128), (5, 24), 12


@dataclass(frozen=True)
class VolumeSpec:
    """What one synthetic volume will look like, before any voxel is drawn.

    Attributes:
        name: case id, ``mv01``..``mv70``.
        shape: ``(x, y, z)`` in voxels.
        spacing: ``(x, y, z)`` in µm.
        seed: seed of this volume's random generator (vessels, noise).
    """

    name: str
    shape: Shape3
    spacing: Spacing3
    seed: int


def _z_values(n: int, z_range: tuple[int, int], median: int, rng: np.random.Generator) -> list[int]:
    """``n`` depths with a log-normal spread around ``median``, clipped to ``z_range``.

    Quantiles (not draws) keep the median stable for any seed; the seed only shuffles them. The
    first volumes get fixed roles: index ``MIN_Z_INDEX`` is the thinnest (``z_range[0]``) and,
    when ``n > MAX_Z_INDEX``, index ``MAX_Z_INDEX`` the thickest (``z_range[1]``).
    """
    lo, hi = z_range
    sigma = math.log(hi / median) / 2.4  # the top quantile lands near the maximum
    dist = NormalDist(math.log(median), sigma)
    zs = [round(math.exp(dist.inv_cdf((i + 0.5) / n))) for i in range(n)]
    zs = [min(max(z, lo + 1), hi - 1) for z in zs]
    rng.shuffle(zs)
    if n > MIN_Z_INDEX:
        zs[MIN_Z_INDEX] = lo
    if n > MAX_Z_INDEX:
        zs[MAX_Z_INDEX] = hi
    return zs


def volume_specs(
    scale: Scale = "small", n_volumes: int | None = None, seed: int = 0
) -> list[VolumeSpec]:
    """The names, shapes and spacings of the synthetic dataset; pure, cheap, deterministic.

    Args:
        scale: ``"full"`` (70 × 512×512×Z, Z in [5, 110]) or ``"small"`` (6 volumes, 64–128 px
            in xy, Z in [5, 24]).
        n_volumes: how many volumes to make (default: 70 for full, 6 for small). Roles are
            fixed by index, so any ``n_volumes >= 3`` contains the mv02 spacing outlier and a
            Z=5 volume, and ``n_volumes >= 4`` a volume with the maximum Z.
        seed: the same seed gives the same specs (and, in :func:`synthesize`, the same voxels).

    Returns:
        One :class:`VolumeSpec` per volume, named ``mv01``, ``mv02``, ...

    Raises:
        ValueError: when ``scale`` is unknown or ``n_volumes < 1``.

    Examples:
        >>> specs = volume_specs("full")
        >>> len(specs), min(s.shape[2] for s in specs), max(s.shape[2] for s in specs)
        (70, 5, 110)
        >>> specs[1].spacing[0]
        4.97
    """
    if scale not in ("small", "full"):
        raise ValueError(f"scale={scale!r}: use 'small' or 'full'.")
    n = (FULL_N if scale == "full" else SMALL_N) if n_volumes is None else n_volumes
    if n < 1:
        raise ValueError(f"n_volumes={n}: need at least 1 volume.")
    rng = np.random.default_rng([seed, 0x5EED])
    if scale == "full":
        zs = _z_values(n, FULL_Z_RANGE, FULL_Z_MEDIAN, rng)
        xys = [FULL_XY] * n
    else:
        zs = _z_values(n, SMALL_Z_RANGE, SMALL_Z_MEDIAN, rng)
        xys = [int(rng.choice(SMALL_XY_CHOICES)) for _ in range(n)]
    specs = []
    for i in range(n):
        sxy = round(float(rng.uniform(0.3, 1.2)), 3)
        sz = round(float(rng.uniform(1.5, 3.5)), 3)
        if i == OUTLIER_INDEX:
            sxy = OUTLIER_SPACING_UM
            sz = max(sz, OUTLIER_SPACING_UM)
        specs.append(
            VolumeSpec(
                name=f"mv{i + 1:02d}",
                shape=(xys[i], xys[i], zs[i]),
                spacing=(sxy, sxy, sz),
                seed=int(rng.integers(0, 2**31 - 1)),
            )
        )
    return specs


# --------------------------------------------------------------------------- vessels


def _tube_segments(
    extent: np.ndarray, spacing: np.ndarray, rng: np.random.Generator, max_segments: int
) -> Iterator[tuple[np.ndarray, np.ndarray, float, float]]:
    """Yield ``(start, end, r_start, r_end)`` of a branching vessel tree, in µm.

    Radii are in µm like real cortical vessels (capillaries ~2 µm, penetrating vessels up to
    ~10 µm), so a larger field of view holds more vessels, not fatter ones. Trees start on the
    lateral faces and grow mostly in the xy plane (as cortical vessels seen
    from above do); they fork with probability 0.3 and thin at each fork. ``z`` reflects at the
    top and bottom so thin volumes keep their vessels.
    """
    lateral = float(min(extent[0], extent[1]))
    count = 0
    while count < max_segments:
        # a new root on a random lateral face, pointing inwards
        axis, side = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        pos = rng.uniform(0.1, 0.9, 3) * extent
        pos[axis] = 0.0 if side == 0 else extent[axis]
        direction = np.zeros(3)
        direction[axis] = 1.0 if side == 0 else -1.0
        direction[1 - axis] = rng.uniform(-0.5, 0.5)
        # µm like real vessels, at least 2.5 voxels across (coarse scans such as mv02 see
        # only the larger vessels), never fatter than a small field of view can hold
        radius = max(float(rng.uniform(*ROOT_RADIUS_UM)), 2.5 * float(spacing[0]))
        radius = min(radius, 0.04 * lateral)
        tips = [(pos, direction / np.linalg.norm(direction), radius)]
        while tips and count < max_segments:
            pos, direction, radius = tips.pop()
            step = rng.normal(0.0, 0.35, 3)
            step[2] *= 0.5
            direction = direction + step
            direction[2] *= 0.6  # cortical vessels seen from above run mostly in-plane
            direction /= np.linalg.norm(direction)
            length = float(rng.uniform(4.0, 9.0) * radius + rng.uniform(5.0, 15.0))
            end = pos + direction * length
            if end[2] < 0 or end[2] > extent[2]:  # reflect in z
                end[2] = float(np.clip(end[2], 0, extent[2]))
                direction[2] = -direction[2]
            r_end = radius * float(rng.uniform(0.85, 1.0))
            yield pos, end, radius, r_end
            count += 1
            inside = 0 <= end[0] <= extent[0] and 0 <= end[1] <= extent[1]
            if not inside or r_end < max(MIN_RADIUS_UM, float(spacing[0])):
                continue
            tips.append((end, direction, r_end))
            if rng.random() < 0.3:
                turn = np.array([-direction[1], direction[0], 0.0]) * rng.choice([-1.0, 1.0])
                branch = direction + turn * rng.uniform(0.6, 1.4)
                tips.append((end, branch / np.linalg.norm(branch), r_end * 0.75))


def _draw_tube(
    label: np.ndarray,
    signal: np.ndarray,
    spacing: np.ndarray,
    seg: tuple[np.ndarray, np.ndarray, float, float],
) -> int:
    """Draw one tapered tube into ``label`` (uint8) and ``signal`` (float32, soft edges).

    Only the bounding box of the tube (plus a halo of 1.5 radii) is touched, with broadcast
    coordinate grids, so the cost is proportional to the tube's volume, not the image's.

    Returns:
        the number of label voxels newly set to 1.
    """
    start, end, r0, r1 = seg
    rmax = max(r0, r1) * 1.5
    lo = np.maximum(np.floor((np.minimum(start, end) - rmax) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((np.maximum(start, end) + rmax) / spacing).astype(int) + 1, label.shape)
    if np.any(hi <= lo):
        return 0
    axis = end - start
    length2 = float(axis @ axis) or 1e-9
    grids = [
        ((np.arange(lo[d], hi[d], dtype=np.float32) * spacing[d]) - start[d]).reshape(
            [-1 if k == d else 1 for k in range(3)]
        )
        for d in range(3)
    ]
    dot = grids[0] * axis[0] + grids[1] * axis[1] + grids[2] * axis[2]
    t = np.clip(dot / length2, 0.0, 1.0)
    dist2 = sum((grids[d] - t * axis[d]) ** 2 for d in range(3))
    radius = r0 + (r1 - r0) * t
    rel = np.sqrt(dist2) / radius  # 0 on the centre line, 1 on the wall
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    inside = rel <= 1.0
    before = int(np.count_nonzero(label[box]))
    label[box] |= inside.astype(np.uint8)
    profile = np.clip(1.25 - 0.5 * rel * rel, 0.0, 1.0).astype(np.float32)  # soft halo
    np.maximum(signal[box], profile, out=signal[box])
    return int(np.count_nonzero(label[box])) - before


def synth_volume(spec: VolumeSpec) -> tuple[np.ndarray, np.ndarray]:
    """Draw one volume: ``(image uint16, label uint8)``, both of shape ``spec.shape``.

    The label holds branching tubes until a target foreground ratio (1.5–5 %) is reached. The
    image is a background that dims with depth (two-photon attenuation) and varies smoothly in
    xy, plus bright vessels with soft edges, plus Gaussian noise (≈ shot noise).
    """
    rng = np.random.default_rng(spec.seed)
    shape = spec.shape
    spacing = np.asarray(spec.spacing, dtype=np.float64)
    extent = np.asarray(shape) * spacing
    label = np.zeros(shape, dtype=np.uint8)
    signal = np.zeros(shape, dtype=np.float32)
    target = int(rng.uniform(0.015, 0.05) * label.size)
    filled = 0
    for seg in _tube_segments(extent, spacing, rng, max_segments=4000):
        filled += _draw_tube(label, signal, spacing, seg)
        if filled >= target:
            break

    # in-place float32 arithmetic: a 512x512x110 volume is 115 MB per temporary
    x = np.linspace(0, np.pi, shape[0], dtype=np.float32)[:, None, None]
    y = np.linspace(0, np.pi, shape[1], dtype=np.float32)[None, :, None]
    depth = np.exp(-np.linspace(0, 1.2, shape[2], dtype=np.float32))[None, None, :]
    background = 400.0 + 120.0 * np.sin(x + rng.uniform(0, 3)) * np.sin(y + rng.uniform(0, 3))
    image = signal
    image *= np.float32(rng.uniform(1800, 3200)) * depth
    image += background.astype(np.float32)
    noise = rng.standard_normal(shape, dtype=np.float32)
    sigma = image * np.float32(0.05)
    sigma += np.float32(40.0)
    noise *= sigma
    del sigma
    image += noise
    del noise
    np.clip(image, 0, 65535, out=image)
    return image.astype(np.uint16), label


def _nifti(array: np.ndarray, spacing: Spacing3):  # -> nib.Nifti1Image
    import nibabel as nib

    affine = np.diag([*spacing, 1.0])
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units(xyz="micron")
    img.header.set_zooms(spacing)
    return img


def _write_nii_gz(img, path: Path) -> None:
    """Write ``img`` as .nii.gz, compressed by ISA-L (fast) when available, else by nibabel."""
    try:
        from isal import igzip
    except ImportError:
        img.to_filename(path)
        return
    path.write_bytes(igzip.compress(img.to_bytes(), compresslevel=1, mtime=0))


def write_volume(out_dir: Path, spec: VolumeSpec, seed: int) -> VolumePair:
    """Draw ``spec`` and write its image, label and metadata in the MiniVess layout."""
    image, label = synth_volume(spec)
    img_path = out_dir / RAW_DIR / f"{spec.name}{NIFTI_EXT}"
    lab_path = out_dir / SEG_DIR / f"{spec.name}{LABEL_SUFFIX}{NIFTI_EXT}"
    _write_nii_gz(_nifti(image, spec.spacing), img_path)
    _write_nii_gz(_nifti(label, spec.spacing), lab_path)
    meta = {
        "name": spec.name,
        "source": "minivess synth (MiniVess-like synthetic data)",
        "dataset_seed": seed,
        "volume_seed": spec.seed,
        "shape_xyz": list(spec.shape),
        "spacing_xyz_um": list(spec.spacing),
        "foreground_ratio": round(float(label.mean()), 6),
        "modality": "two-photon microscopy (synthetic)",
    }
    (out_dir / JSON_DIR / f"{spec.name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return VolumePair(name=spec.name, image=str(img_path), label=str(lab_path))


def synthesize(
    out_dir: Path | str,
    scale: Scale = "small",
    n_volumes: int | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    workers: int | None = None,
) -> list[VolumePair]:
    """Write the MiniVess-like dataset to ``out_dir`` (see the module docstring for the layout).

    Files of the same names are overwritten; other files in ``out_dir`` are left alone. The same
    ``(scale, n_volumes, seed)`` always gives the same voxels, whatever ``workers`` is.

    Args:
        out_dir: destination folder, created if missing.
        scale: ``"small"`` (default, 6 small volumes) or ``"full"`` (70 × 512×512×Z).
        n_volumes: number of volumes (default 6 small / 70 full).
        seed: dataset seed.
        progress: show a rich progress bar.
        workers: worker processes (default: one per CPU core for full scale, in-process for
            small scale, where starting processes costs more than it saves).

    Returns:
        The written image/label pairs, in name order.
    """
    out = Path(out_dir)
    for sub in (RAW_DIR, SEG_DIR, JSON_DIR):
        (out / sub).mkdir(parents=True, exist_ok=True)
    specs = volume_specs(scale, n_volumes, seed)
    if workers is None:
        workers = (os.cpu_count() or 1) if scale == "full" else 1
    workers = max(1, min(workers, len(specs)))
    log.info(
        "synth: writing %d %s-scale volumes to %s (seed %d, %d worker(s))",
        len(specs),
        scale,
        out,
        seed,
        workers,
    )
    from minivess.data._progress import progress_bar

    if workers == 1:
        pairs = []
        with progress_bar(progress) as bar:
            task = bar.add_task(f"synth {scale}", total=len(specs))
            for spec in specs:
                pairs.append(write_volume(out, spec, seed))
                bar.advance(task)
        return pairs

    from concurrent.futures import ProcessPoolExecutor, as_completed

    # biggest first, so the long volumes do not finish last on one core
    order = sorted(specs, key=lambda s: -math.prod(s.shape))
    done: dict[str, VolumePair] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(write_volume, out, spec, seed) for spec in order]
        with progress_bar(progress) as bar:
            task = bar.add_task(f"synth {scale}", total=len(specs))
            for fut in as_completed(futures):
                pair = fut.result()
                done[pair.name] = pair
                bar.advance(task)
    return [done[s.name] for s in specs]
