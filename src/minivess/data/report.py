"""The QC report: one self-contained HTML page (inline PNGs) plus the same figures as PNG files.

Contents: a summary table, the dataset warnings and quarantined files, four plots (shape
distribution, spacing per axis with outliers marked, intensity histograms, foreground ratio)
and one row per volume with a mid-slice thumbnail (label overlaid in red) and its warnings.

Thumbnails and intensity histograms come from the profiler's cache (written while it had the
voxels in memory); when the cache has no entry (a profile loaded from JSON on another machine)
the volume is read again. Figures use matplotlib's Agg canvas through ``Figure`` objects, with
no pyplot global state.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minivess.data.schema import DatasetProfile, VolumePair, VolumeStats

log = logging.getLogger(__name__)

#: File names of the dataset-level figures (``figures_dir/<name>.png``).
FIGURES = ("shape_distribution", "spacing", "intensity_histograms", "foreground_ratio")
OVERLAY_RGB, OVERLAY_ALPHA = np.array([255, 40, 40], dtype=np.float32), 0.45


@dataclass(frozen=True)
class QcReport:
    """Where the report went.

    Attributes:
        html: the self-contained HTML file.
        figures_dir: folder of the PNGs (dataset figures and ``thumbnails/``).
        figures: ``{figure name: PNG path}`` for :data:`FIGURES`.
        thumbnails: ``{volume name: PNG path}``, one per profiled volume.
    """

    html: Path
    figures_dir: Path
    figures: dict[str, Path] = field(default_factory=dict)
    thumbnails: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs


def _qc_arrays(vol: VolumeStats, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """Thumbnail, mask and histogram of ``vol``: from the profiler cache, else from the file."""
    from minivess.data.profiler import (
        intensity_stats,
        load_qc_arrays,
        thumbnail,
    )
    from minivess.data.validation import load_checked

    cached = load_qc_arrays(cache_dir, vol.content_hash)
    if cached is not None:
        return cached
    log.info("QC report: %s not in the profile cache, reading it again", vol.name)
    loaded = load_checked(VolumePair(name=vol.name, image=vol.file, label=vol.label_file))
    mid = loaded.image.shape[2] // 2
    stats = intensity_stats(loaded.image)
    thumb, mask = thumbnail(
        loaded.image[:, :, mid],
        loaded.label[:, :, mid],
        float(stats["intensity_p1"]),
        float(stats["intensity_p99"]),
    )
    return {
        "thumb": thumb,
        "mask": mask,
        "hist": np.asarray(stats["hist"]),
        "hist_range": np.asarray(stats["hist_range"], dtype=np.float64),
    }


def overlay(thumb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB uint8 image ``(y, x, 3)`` of a ``(x, y)`` gray slice with ``mask`` blended in red.

    The array is transposed so that x runs left to right and y top to bottom, as viewers show
    a NIfTI axial slice.
    """
    gray = np.repeat(thumb.T[:, :, None].astype(np.float32), 3, axis=2)
    m = mask.T
    gray[m] = (1 - OVERLAY_ALPHA) * gray[m] + OVERLAY_ALPHA * OVERLAY_RGB
    return gray.astype(np.uint8)


# --------------------------------------------------------------------------- figures


def _figure(width: float, height: float):  # -> matplotlib.figure.Figure
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _shape_figure(profile: DatasetProfile):
    fig = _figure(9, 3.2)
    ax_z, ax_xy = fig.subplots(1, 2)
    zs = [v.shape[2] for v in profile.volumes]
    ax_z.hist(zs, bins=min(30, max(5, len(set(zs)))), color="#3a6ea5")
    ax_z.axvline(
        profile.min_shape[2], color="#c0392b", ls="--", label=f"min z {profile.min_shape[2]}"
    )
    ax_z.set(xlabel="z (slices)", ylabel="volumes", title="Depth (z) per volume")
    ax_z.legend(fontsize=8)
    ax_xy.scatter([v.shape[0] for v in profile.volumes], [v.shape[1] for v in profile.volumes],
                  c=zs, cmap="viridis", s=25)  # fmt: skip
    ax_xy.set(xlabel="x (voxels)", ylabel="y (voxels)", title="In-plane size (colour: z)")
    return fig


def _spacing_figure(profile: DatasetProfile):
    fig = _figure(9, 3.2)
    axes = fig.subplots(1, 3)
    outliers = {v.name for v in profile.volumes if any("spacing outlier" in w for w in v.warnings)}
    rng = np.random.default_rng(0)
    for axis, ax in enumerate(axes):
        values = np.array([v.spacing[axis] for v in profile.volumes])
        jitter = rng.uniform(-0.15, 0.15, values.size)
        is_out = np.array([v.name in outliers for v in profile.volumes])
        ax.scatter(jitter[~is_out], values[~is_out], s=18, color="#3a6ea5", label="volume")
        if is_out.any():
            ax.scatter(jitter[is_out], values[is_out], s=40, color="#c0392b", marker="x",
                       label="outlier")  # fmt: skip
            for j, val, vol in zip(jitter, values, profile.volumes, strict=True):
                if vol.name in outliers:
                    ax.annotate(vol.name, (j, val), fontsize=8, xytext=(4, 0),
                                textcoords="offset points")  # fmt: skip
        ax.axhline(float(np.median(values)), color="gray", ls=":", lw=1)
        ax.set(xticks=[], title=f"spacing {'xyz'[axis]} (µm)", xlim=(-0.6, 0.6), ylim=(0, None))
    axes[0].legend(fontsize=8)
    return fig


def _intensity_figure(profile: DatasetProfile, arrays: dict[str, dict[str, np.ndarray]]):
    fig = _figure(9, 3.4)
    ax = fig.subplots()
    cmap = _cmap(len(profile.volumes))
    for i, vol in enumerate(profile.volumes):
        qc = arrays[vol.name]
        lo, hi = (float(x) for x in qc["hist_range"])
        counts = np.asarray(qc["hist"], dtype=np.float64)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, counts.size + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        ax.plot(centres, counts / max(counts.sum(), 1), lw=1, color=cmap(i), alpha=0.8)
    ax.set_yscale("log")
    ax.set(xlabel="intensity", ylabel="fraction of voxels",
           title=f"Intensity histograms ({len(profile.volumes)} volumes)")  # fmt: skip
    return fig


def _foreground_figure(profile: DatasetProfile):
    fig = _figure(9, 3.2)
    ax = fig.subplots()
    names = [v.name for v in profile.volumes]
    ratios = [100 * v.foreground_ratio for v in profile.volumes]
    ax.bar(range(len(names)), ratios, color="#3a6ea5")
    step = max(1, len(names) // 25)
    ax.set_xticks(range(0, len(names), step), names[::step], rotation=90, fontsize=7)
    ax.set(ylabel="foreground (%)", title="Foreground (label > 0) ratio per volume")
    return fig


def _cmap(n: int):
    from matplotlib import colormaps

    base = colormaps["viridis"]
    return lambda i: base(i / max(n - 1, 1))


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


# --------------------------------------------------------------------------- HTML


def _b64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _fmt3(values: tuple[float, ...]) -> str:
    return " × ".join(f"{v:.4g}" for v in values)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;font-size:13px}th{background:#f0f3f7;text-align:left}
.warn{color:#9a6700}.bad{color:#b42318}img.fig{max-width:100%}img.thumb{width:160px;
image-rendering:pixelated}
"""


def _summary_rows(profile: DatasetProfile) -> list[tuple[str, str]]:
    return [
        ("data folder", profile.data_dir),
        ("volumes (usable)", str(profile.n_volumes)),
        ("rejected", str(len(profile.rejected))),
        ("min shape (x × y × z)", _fmt3(profile.min_shape)),
        ("median shape", _fmt3(profile.median_shape)),
        ("max shape", _fmt3(profile.max_shape)),
        ("spacing min (µm)", _fmt3(profile.spacing_range[0])),
        ("spacing max (µm)", _fmt3(profile.spacing_range[1])),
        ("anisotropic", str(profile.is_anisotropic)),
        ("size, float32 uncompressed", f"{profile.total_size_gb:.3f} GB"),
        ("dataset hash", profile.dataset_hash),
    ]


def _html(profile: DatasetProfile, figures: dict[str, Path], thumbs: dict[str, Path]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>QC report: {e(profile.data_dir)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Dataset QC report</h1><p>{e(profile.data_dir)}: native resolution, "
        "no resampling.</p><h2>Summary</h2><table>",
    ]
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _summary_rows(profile)]
    parts.append("</table><h2>Warnings</h2><ul>")
    parts += [f"<li class='warn'>{e(w)}</li>" for w in profile.warnings] or ["<li>none</li>"]
    parts.append("</ul><h2>Quarantined files</h2>")
    if profile.rejected:
        parts.append("<table><tr><th>file</th><th>reason</th></tr>")
        parts += [
            f"<tr><td>{e(Path(r.file).name)}</td><td class='bad'>{e(r.reason)}</td></tr>"
            for r in profile.rejected
        ]
        parts.append("</table>")
    else:
        parts.append("<p>none</p>")
    parts.append("<h2>Plots</h2>")
    parts += [f"<img class='fig' alt='{e(n)}' src='{_b64(p)}'>" for n, p in figures.items()]
    parts.append(
        "<h2>Volumes</h2><table><tr><th>volume</th><th>mid-z slice (label in red)</th>"
        "<th>shape</th><th>spacing (µm)</th><th>dtype</th><th>intensity p1 / mean / p99</th>"
        "<th>foreground</th><th>warnings</th></tr>"
    )
    for v in profile.volumes:
        warns = "<br>".join(f"<span class='warn'>{e(w)}</span>" for w in v.warnings) or "-"
        parts.append(
            f"<tr id='{e(v.name)}'><td>{e(v.name)}</td>"
            f"<td><img class='thumb' alt='thumbnail {e(v.name)}' src='{_b64(thumbs[v.name])}'>"
            f"</td><td>{_fmt3(v.shape)}</td><td>{_fmt3(v.spacing)}</td><td>{e(v.dtype)}</td>"
            f"<td>{v.intensity_p1:.4g} / {v.intensity_mean:.4g} / {v.intensity_p99:.4g}</td>"
            f"<td>{100 * v.foreground_ratio:.2f} %</td><td>{warns}</td></tr>"
        )
    parts.append("</table></body></html>\n")
    return "".join(parts)


def write_qc_report(
    profile: DatasetProfile,
    out_html: Path | str,
    figures_dir: Path | str | None = None,
    *,
    cache_dir: Path | None = None,
) -> QcReport:
    """Write the QC report of ``profile`` as self-contained HTML plus PNG figures.

    Args:
        profile: the profile from :func:`~minivess.data.profiler.profile_dataset`.
        out_html: the HTML file to write (its folder is created).
        figures_dir: where the PNGs go (default: ``<out_html stem>_figures/`` next to it);
            thumbnails go to ``figures_dir/thumbnails/<volume>.png``.
        cache_dir: the profiler cache to take thumbnails from (default: the profiler's).

    Returns:
        The paths written (:class:`QcReport`).
    """
    from minivess.data.profiler import default_cache_dir

    out = Path(out_html)
    figs_dir = (
        Path(figures_dir) if figures_dir is not None else out.with_name(f"{out.stem}_figures")
    )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    arrays = {v.name: _qc_arrays(v, cache) for v in profile.volumes}

    from matplotlib.image import imsave

    thumbs: dict[str, Path] = {}
    for v in profile.volumes:
        path = figs_dir / "thumbnails" / f"{v.name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        imsave(path, overlay(arrays[v.name]["thumb"], arrays[v.name]["mask"]))
        thumbs[v.name] = path
    builders = {
        "shape_distribution": lambda: _shape_figure(profile),
        "spacing": lambda: _spacing_figure(profile),
        "intensity_histograms": lambda: _intensity_figure(profile, arrays),
        "foreground_ratio": lambda: _foreground_figure(profile),
    }
    figures = {name: _save(build(), figs_dir / f"{name}.png") for name, build in builders.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(_html(profile, figures, thumbs), encoding="utf-8")
    tmp.replace(out)
    log.info("QC report: %s (%d volumes, figures in %s)", out, len(profile.volumes), figs_dir)
    return QcReport(html=out, figures_dir=figs_dir, figures=figures, thumbnails=thumbs)
