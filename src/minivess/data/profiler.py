"""Dataset profiler: what the planner and the QC report know about a dataset, at native resolution.

Nothing is resampled here, ever: shapes and spacings are what the files hold.

How it stays fast and small:
    * :func:`scan_headers` reads headers only (no voxels) — shapes, spacings, dtypes.
    * :func:`profile_dataset` streams voxel statistics volume by volume in worker processes;
      each worker holds one volume at a time, so peak memory is a few volumes, never the
      dataset. Integer images get exact statistics from a chunked histogram (no float copy).
    * Results are cached per volume under a key made of the files' sha256 (plus the
      profiler version and the label classes), computed from the bytes on every call (never
      from size and mtime), so re-profiling an unchanged dataset inflates no voxel and a file
      changed in place is always read again; ``DatasetProfile.n_scanned`` / ``n_cached`` say
      what this call did.
    * One bad file never stops the rest: any failure reading or checking a file quarantines
      it with a one-line reason (``DatasetProfile.rejected``).

The cache lives in ``$MINIVESS_CACHE_DIR`` (default ``~/.cache/minivess``) under ``profile/``,
outside the data folder, so a DVC-tracked dataset is never modified by profiling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from minivess.data.discovery import declared_classes, discover_pairs
from minivess.data.schema import (
    FLOAT32_BYTES,
    DatasetProfile,
    Rejected,
    Spacing3,
    VolumePair,
    VolumeStats,
)
from minivess.data.validation import (
    HeaderInfo,
    check_header,
    check_pair_headers,
    read_image,
    read_label,
    rejection_reason,
)
from minivess.errors import DataError
from minivess.settings import cache_root

log = logging.getLogger(__name__)

#: Bump when the statistics change meaning; old cache entries are then ignored.
PROFILER_VERSION = "1"
#: A volume whose spacing along an axis is this many times above or below the dataset's
#: median spacing along that axis is named as a spacing outlier.
SPACING_OUTLIER_FACTOR = 3.0
#: ``is_anisotropic`` threshold: coarsest / finest axis, or largest / smallest across volumes.
ANISOTROPY_RATIO = 2.0
#: Voxels per chunk when streaming statistics (bounds the temporaries to ~32 MB).
CHUNK_VOXELS = 1 << 22
HIST_BINS = 64
THUMB_MAX_PX = 256


_N = TypeVar("_N", int, float)


def _xyz(values: Iterable[_N]) -> tuple[_N, _N, _N]:
    """Three values (x, y, z) as a typed 3-tuple."""
    x, y, z = values
    return x, y, z


def default_cache_dir() -> Path:
    """``<cache root>/profile`` (:func:`minivess.settings.cache_root`, the one rule)."""
    return cache_root() / "profile"


# --------------------------------------------------------------------------- statistics


def _slabs(array: np.ndarray):
    """Consecutive z-slabs of ``array`` (x, y, z), each at most ~CHUNK_VOXELS voxels."""
    per_z = max(1, array.shape[0] * array.shape[1])
    step = max(1, CHUNK_VOXELS // per_z)
    for z0 in range(0, array.shape[2], step):
        yield array[:, :, z0 : z0 + step]


def _exact_counts(image: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Histogram of every integer value, ``(counts, offset)``; None for floats / wide ranges."""
    if image.dtype.kind not in "uib":
        return None
    lo, hi = int(image.min()), int(image.max())
    if hi - lo > (1 << 20):
        return None
    counts = np.zeros(hi - lo + 1, dtype=np.int64)
    for slab in _slabs(image):
        flat = slab.ravel(order="K")
        if lo != 0:
            flat = flat.astype(np.int64) - lo
        counts += np.bincount(flat, minlength=counts.size)
    return counts, lo


def _percentile_from_counts(counts: np.ndarray, values: np.ndarray, q: float) -> float:
    """Nearest-rank (``inverted_cdf``) percentile ``q`` in [0, 100] of a histogram."""
    cum = np.cumsum(counts)
    rank = q / 100.0 * cum[-1]
    return float(values[min(int(np.searchsorted(cum, rank, side="left")), values.size - 1)])


def intensity_stats(image: np.ndarray) -> dict[str, Any]:
    """min, max, mean, std, p1, p99 of ``image`` and a 64-bin histogram, streamed in slabs.

    Integer images are exact (``p1``/``p99`` are nearest-rank, numpy's ``inverted_cdf``); float
    images use a 4096-bin histogram between min and max for the percentiles, accurate to
    (max - min) / 4096. No full-size float copy of the volume is made.

    Returns:
        A dict with keys ``intensity_min`` ... ``intensity_p99`` (floats), ``hist`` (64
        counts) and ``hist_range`` (``[min, max]``).
    """
    exact = _exact_counts(image)
    if exact is not None:
        counts, offset = exact
        values = np.arange(counts.size, dtype=np.float64) + offset
        n = counts.sum()
        mean = float((counts * values).sum() / n)
        var = float((counts * (values - mean) ** 2).sum() / n)
        vmin, vmax = float(values[0]), float(values[-1])
        p1 = _percentile_from_counts(counts, values, 1)
        p99 = _percentile_from_counts(counts, values, 99)
        nz = counts > 0
        hist, _ = np.histogram(values[nz], bins=HIST_BINS, range=(vmin, vmax), weights=counts[nz])
    else:
        vmin, vmax, total, total2, n = math.inf, -math.inf, 0.0, 0.0, 0
        for slab in _slabs(image):
            s64 = slab.astype(np.float64)
            vmin, vmax = min(vmin, float(s64.min())), max(vmax, float(s64.max()))
            total += float(s64.sum())
            total2 += float(np.square(s64).sum())
            n += s64.size
        mean = total / n
        var = max(total2 / n - mean * mean, 0.0)
        span = (vmin, vmax if vmax > vmin else vmin + 1.0)
        fine = np.zeros(4096, dtype=np.int64)
        for slab in _slabs(image):
            fine += np.histogram(slab, bins=4096, range=span)[0]
        edges = np.linspace(span[0], span[1], 4097)
        p1 = _percentile_from_counts(fine, edges[1:], 1)
        p99 = _percentile_from_counts(fine, edges[1:], 99)
        hist = fine.reshape(HIST_BINS, -1).sum(axis=1)
    return {
        "intensity_min": vmin,
        "intensity_max": vmax,
        "intensity_mean": mean,
        "intensity_std": math.sqrt(var),
        "intensity_p1": p1,
        "intensity_p99": p99,
        "hist": [int(c) for c in hist],
        "hist_range": [vmin, vmax],
    }


def foreground_voxels(label: np.ndarray) -> int:
    """Number of label voxels > 0, streamed in slabs."""
    return int(sum(np.count_nonzero(slab) for slab in _slabs(label)))


def thumbnail(
    image_slice: np.ndarray, label_slice: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """A 2D ``(x, y)`` slice as uint8 windowed to ``[lo, hi]`` and its label mask, ≤ 256 px."""
    step = max(1, math.ceil(max(image_slice.shape) / THUMB_MAX_PX))
    sl = image_slice[::step, ::step].astype(np.float32)
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    thumb = np.clip((sl - lo) * scale, 0, 255).astype(np.uint8)
    return thumb, label_slice[::step, ::step] > 0


# --------------------------------------------------------------------------- one volume


@dataclass
class _ScanResult:
    """What a worker sends back: stats (no paths) or a reason, plus the QC arrays."""

    key: str
    stats: dict | None
    reason: str | None
    qc: dict[str, np.ndarray] | None


def scan_volume(pair: VolumePair, classes: frozenset[int], key: str = "") -> _ScanResult:
    """Check and measure one pair; the image and label are never in memory together.

    Runs in a worker process; returns stats with no file paths (so the cache entry is
    valid wherever the same bytes live) or the one-line reason for quarantine.
    """
    try:
        return _scan(pair, classes, key)
    except Exception as err:  # per-file isolation: any failure quarantines this pair only
        return _ScanResult(key=key, stats=None, reason=rejection_reason(err), qc=None)


def _scan(pair: VolumePair, classes: frozenset[int], key: str) -> _ScanResult:
    info, label_info = check_pair_headers(pair)
    image = read_image(info)
    stats = intensity_stats(image)
    mid = image[:, :, image.shape[2] // 2].copy()
    del image
    label = read_label(label_info, classes)
    fg = foreground_voxels(label) / label.size
    warnings = list(info.warnings) + [f"label: {w}" for w in label_info.warnings]
    if fg == 0:
        warnings.append("label is empty (no foreground voxel)")
    thumb, mask = thumbnail(mid, label[:, :, label.shape[2] // 2], *_window(stats))
    hist, hist_range = stats.pop("hist"), stats.pop("hist_range")
    stats.update(
        shape=list(info.shape),
        spacing=list(info.spacing),
        dtype=info.dtype,
        foreground_ratio=fg,
        bytes=int(np.prod(info.shape)) * FLOAT32_BYTES,
        warnings=warnings,
    )
    qc = {
        "thumb": thumb,
        "mask": mask,
        "hist": np.asarray(hist, dtype=np.int64),
        "hist_range": np.asarray(hist_range, dtype=np.float64),
    }
    return _ScanResult(key=key, stats=stats, reason=None, qc=qc)


def _window(stats: dict) -> tuple[float, float]:
    return float(stats["intensity_p1"]), float(stats["intensity_p99"])


# --------------------------------------------------------------------------- cache


class _Cache:
    """Per-volume results on disk, keyed by the content of the files.

    A hit is proven by content: every call hashes every file's bytes (sha256, threaded; about
    1 s of CPU for 0.7 GB), so a file changed in place with its size and mtime restored misses
    the cache, is read again, and its gzip CRC is checked.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def file_hash(path: Path) -> str:
        """sha256 of the bytes of ``path``."""
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.root / "volumes" / f"{key}.json"

    def qc_path(self, key: str) -> Path:
        return self.root / "qc" / f"{key}.npz"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self.entry_path(key).read_text())
        except (OSError, ValueError):
            return None

    def put(self, result: _ScanResult) -> None:
        entry = self.entry_path(result.key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        if result.qc is not None:
            qc = self.qc_path(result.key)
            qc.parent.mkdir(parents=True, exist_ok=True)
            tmp = qc.with_name(f".{result.key}.{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, **result.qc)  # type: ignore[arg-type]  # numpy stub: **kw may hit allow_pickle
            os.replace(tmp, qc)
        payload = {"stats": result.stats, "reason": result.reason}
        _atomic_write(entry, json.dumps(payload))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_qc_arrays(cache_dir: Path | None, content_hash: str) -> dict[str, np.ndarray] | None:
    """The thumbnail/mask/histogram the profiler cached for a volume, or None."""
    if not content_hash:
        return None
    path = (cache_dir or default_cache_dir()) / "qc" / f"{content_hash}.npz"
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- dataset


def spacing_outliers(
    spacings: dict[str, Spacing3], factor: float = SPACING_OUTLIER_FACTOR
) -> dict[str, str]:
    """Volumes whose spacing on some axis is ``factor``× above/below that axis's median.

    Returns:
        ``{name: one-line warning}``, e.g. ``{"mv02": "mv02: spacing outlier: x=4.97 is
        7.1× the dataset median 0.70 (µm) ..."}``.
    """
    if len(spacings) < 3:
        return {}
    medians = [statistics.median(s[axis] for s in spacings.values()) for axis in range(3)]
    out: dict[str, str] = {}
    for name, spacing in spacings.items():
        notes = []
        for axis, label in enumerate("xyz"):
            value, median = spacing[axis], medians[axis]
            ratio = value / median if median > 0 else 1.0
            if ratio >= factor or ratio <= 1 / factor:
                notes.append(f"{label}={value:.3g} is {ratio:.2g}× the median {median:.3g}")
        if notes:
            out[name] = (
                f"{name}: spacing outlier: {', '.join(notes)} (µm; threshold {factor:g}×); "
                "check the header or the acquisition"
            )
    return out


def _is_anisotropic(spacings: list[Spacing3]) -> bool:
    within = statistics.median(max(s) / min(s) for s in spacings)
    across = max(max(s[a] for s in spacings) / min(s[a] for s in spacings) for a in range(3))
    return within > ANISOTROPY_RATIO or across > ANISOTROPY_RATIO


def summarize(
    data_dir: str,
    volumes: list[VolumeStats],
    rejected: list[Rejected],
    dataset_hash: str,
) -> DatasetProfile:
    """Aggregate per-volume stats into a :class:`DatasetProfile` (pure; no I/O).

    Per-axis min/max/median of the shapes (median rounded down to whole voxels), spacing
    range per axis, float32 size in GB (1e9 bytes), spacing outliers named in ``warnings``
    and in the volume's own warnings.

    Raises:
        DataError: when ``volumes`` is empty (no usable volume).
    """
    if not volumes and not rejected:
        raise DataError(
            f"{data_dir}: no image/label pair found. Put images in raw/ and labels in seg/ "
            "(MiniVess) or in imagesTr/ and labelsTr/ (nnU-Net), then profile again."
        )
    if not volumes:
        first = "; ".join(f"{Path(r.file).name}: {r.reason}" for r in rejected[:3])
        more = f" (+{len(rejected) - 3} more)" if len(rejected) > 3 else ""
        raise DataError(
            f"{data_dir}: no usable volume, all {len(rejected)} rejected: {first}{more}. "
            "Fix these files or point DATA_DIR at another dataset."
        )
    volumes = sorted(volumes, key=lambda v: v.name)
    shapes = np.array([v.shape for v in volumes])
    spacings = [v.spacing for v in volumes]
    outliers = spacing_outliers({v.name: v.spacing for v in volumes})
    volumes = [
        v.model_copy(update={"warnings": [*v.warnings, outliers[v.name]]})
        if v.name in outliers
        else v
        for v in volumes
    ]
    warnings = list(outliers.values())
    min_z = int(shapes[:, 2].min())
    thinnest = [v.name for v in volumes if v.shape[2] == min_z]
    warnings.append(
        f"smallest z is {min_z} voxel(s) ({', '.join(thinnest[:5])}): patches deeper than "
        f"{min_z} need explicit padding"
    )
    if rejected:
        warnings.append(
            f"{len(rejected)} file(s) quarantined, see 'rejected' (training uses the rest)"
        )
    return DatasetProfile(
        data_dir=data_dir,
        n_volumes=len(volumes),
        min_shape=_xyz(int(x) for x in shapes.min(axis=0)),
        max_shape=_xyz(int(x) for x in shapes.max(axis=0)),
        median_shape=_xyz(int(x) for x in np.floor(np.median(shapes, axis=0))),
        spacing_range=(
            _xyz(min(s[a] for s in spacings) for a in range(3)),
            _xyz(max(s[a] for s in spacings) for a in range(3)),
        ),
        is_anisotropic=_is_anisotropic(spacings),
        total_size_gb=sum(v.bytes for v in volumes) / 1e9,
        warnings=warnings,
        rejected=rejected,
        dataset_hash=dataset_hash,
        volumes=volumes,
    )


def _pair_key(image_hash: str, label_hash: str, classes: frozenset[int]) -> str:
    text = f"v{PROFILER_VERSION}|{sorted(classes)}|{image_hash}|{label_hash}"
    return hashlib.sha256(text.encode()).hexdigest()


def _dataset_hash(root: Path, hashed: dict[Path, str]) -> str:
    """sha256 over ``relative path: file sha256`` lines of every discovered file."""
    lines = sorted(
        f"{p.relative_to(root) if p.is_relative_to(root) else p}:{h}" for p, h in hashed.items()
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _hash_files(
    root: Path,
    pairs: list[VolumePair],
    rejected: list[Rejected],
    cache: _Cache,
    classes: frozenset[int],
) -> tuple[dict[Path, str], list[tuple[VolumePair, str]]]:
    """sha256 of every discovered file, and each readable pair with its cache key.

    A pair with a file that cannot be read (a broken link, no permission) is appended to
    ``rejected`` with the reason instead.
    """
    from concurrent.futures import ThreadPoolExecutor

    def digest(path: Path) -> str | OSError:
        try:
            return cache.file_hash(path)
        except OSError as err:
            return err

    files = [Path(f) for pair in pairs for f in (pair.image, pair.label or pair.image)]
    files += [Path(r.file) for r in rejected if Path(r.file).is_file()]
    # hashlib releases the GIL on large buffers: a few threads hash files side by side
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = dict(zip(files, pool.map(digest, files), strict=True))
    keyed = []
    for pair in pairs:
        image, label = Path(pair.image), Path(pair.label or pair.image)
        failed = next((r for r in (results[image], results[label]) if isinstance(r, OSError)), None)
        if failed is not None:
            name = Path(failed.filename or pair.image).name
            reason = f"{name} is not readable ({failed.strerror or failed}); fix the file or link"
            rejected.append(Rejected(file=pair.image, reason=reason))
            continue
        keyed.append((pair, _pair_key(str(results[image]), str(results[label]), classes)))
    hashed = {f: h for f, h in results.items() if isinstance(h, str)}
    return hashed, keyed


def dataset_content_hash(data_dir: Path | str, *, cache_dir: Path | None = None) -> str:
    """The dataset's content hash (``DatasetProfile.dataset_hash``) without reading voxels.

    sha256 over ``relative path: sha256 of the file`` for every discovered file (pairs and
    quarantined files alike); every byte is read, so any change changes the hash.
    """
    root = Path(data_dir)
    pairs, rejected = discover_pairs(root)
    cache = _Cache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    hashed, _ = _hash_files(root, pairs, rejected, cache, declared_classes(root))
    return _dataset_hash(root, hashed)


def _run_scans(
    todo: list[tuple[VolumePair, str]],
    classes: frozenset[int],
    workers: int,
    progress: bool,
    total: int,
    done_already: int,
):
    """Yield :class:`_ScanResult` for each pending pair, in worker processes when ``workers>1``."""
    from minivess.data._progress import progress_bar

    if workers <= 1 or len(todo) <= 1:
        with progress_bar(progress) as bar:
            task = bar.add_task("profile", total=total, completed=done_already)
            for pair, key in todo:
                yield scan_volume(pair, classes, key)
                bar.advance(task)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # largest first so one big volume does not finish alone at the end
    order = sorted(todo, key=lambda t: -Path(t[0].image).stat().st_size)
    broken: list[tuple[VolumePair, str]] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("profile", total=total, completed=done_already)
        pool = ProcessPoolExecutor(max_workers=workers)
        try:
            futures = {
                pool.submit(scan_volume, pair, classes, key): (pair, key) for pair, key in order
            }
            for fut in as_completed(futures):
                try:
                    result = fut.result()
                except BrokenProcessPool:  # a worker died (OOM kill, a crash in C code)
                    broken.append(futures[fut])
                    continue
                yield result
                bar.advance(task)
        finally:
            # on an early exit (SIGTERM, Ctrl-C) the queued volumes are dropped, not scanned
            pool.shutdown(wait=True, cancel_futures=True)
        for pair, key in broken:  # which one killed the pool is unknown: each alone
            yield _scan_isolated(pair, classes, key)
            bar.advance(task)


def _scan_isolated(pair: VolumePair, classes: frozenset[int], key: str) -> _ScanResult:
    """:func:`scan_volume` in a process of its own; a crash of that process quarantines ``pair``."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            return pool.submit(scan_volume, pair, classes, key).result()
        except BrokenProcessPool:
            reason = (
                "reading it killed the reader process (out of memory, or a crash in a "
                "decoder); check the file's header and size, or export it again"
            )
            return _ScanResult(key=key, stats=None, reason=reason, qc=None)


def profile_dataset(
    data_dir: Path | str,
    *,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DatasetProfile:
    """Discover, validate and profile ``data_dir`` at native resolution (no resampling).

    Args:
        data_dir: a dataset in the MiniVess or nnU-Net/Decathlon layout.
        cache_dir: where per-volume results are cached (default :func:`default_cache_dir`).
        workers: worker processes for the voxel pass (default: CPU cores, at most one per
            pending volume; 1 runs in this process).
        progress: show a rich progress bar.

    Returns:
        The profile; failing volumes are in ``rejected`` with a one-line reason, and
        ``n_scanned``/``n_cached`` tell how many volumes were read / taken from the cache.

    Raises:
        DataError: unknown layout, or no usable volume.

    Examples:
        >>> profile = profile_dataset("data/minivess")  # doctest: +SKIP
        >>> profile.min_shape  # doctest: +SKIP
        (512, 512, 5)
    """
    root = Path(data_dir)
    pairs, rejected = discover_pairs(root)
    classes = declared_classes(root)
    cache = _Cache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    hashed, keyed = _hash_files(root, pairs, rejected, cache, classes)

    results: dict[str, dict] = {}
    todo = []
    for pair, key in keyed:
        entry = cache.get(key)
        if entry is not None:
            results[key] = entry
        else:
            todo.append((pair, key))
    n_cached = len(keyed) - len(todo)
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(1, min(workers, len(todo)))
    log.info(
        "profile: %d pair(s) in %s, %d cached, %d to scan with %d worker(s)",
        len(keyed),
        root,
        n_cached,
        len(todo),
        workers,
    )
    for result in _run_scans(todo, classes, workers, progress, len(keyed), n_cached):
        cache.put(result)
        results[result.key] = {"stats": result.stats, "reason": result.reason}

    volumes: list[VolumeStats] = []
    for pair, key in keyed:
        entry = results[key]
        if entry["stats"] is None:
            rejected.append(Rejected(file=pair.image, reason=entry["reason"]))
            log.warning("quarantined %s: %s", pair.image, entry["reason"])
            continue
        volumes.append(
            VolumeStats(
                name=pair.name,
                file=pair.image,
                label_file=pair.label,
                content_hash=key,
                **entry["stats"],
            )
        )
    profile = summarize(str(root), volumes, rejected, _dataset_hash(root, hashed))
    return profile.model_copy(update={"n_scanned": len(todo), "n_cached": n_cached})


def scan_headers(data_dir: Path | str) -> tuple[list[HeaderInfo], list[Rejected]]:
    """Shapes, spacings and dtypes of every image of ``data_dir`` from headers only.

    No voxel is read, so this is fast (well under a second for 70 gzipped volumes). Only
    header-level checks run here; use :func:`profile_dataset` for the full validation.

    Returns:
        ``(headers of the images that have a label, rejected)``.
    """
    pairs, rejected = discover_pairs(data_dir)
    headers = []
    for pair in pairs:
        try:
            info = check_header(pair.image)
        except Exception as err:  # per-file isolation: any failure quarantines this file only
            rejected.append(Rejected(file=pair.image, reason=rejection_reason(err)))
            continue
        headers.append(info)
    return headers, rejected
