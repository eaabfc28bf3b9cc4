"""The QC report: self-contained HTML, a thumbnail per volume, PNG figures for later flows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from minivess.data.profiler import profile_dataset
from minivess.data.report import FIGURES, overlay, write_qc_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_is_self_contained_with_a_thumbnail_per_volume(
    small_dataset: Path, tmp_path: Path
) -> None:
    profile = profile_dataset(small_dataset, workers=1, progress=False)
    report = write_qc_report(profile, tmp_path / "qc" / "report.html")
    page = report.html.read_text()

    sources = re.findall(r"<img[^>]*src='([^']*)'", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    thumbs = re.findall(r"alt='thumbnail (mv\d\d)'", page)
    assert thumbs == [v.name for v in profile.volumes]
    assert len(sources) == len(FIGURES) + profile.n_volumes
    assert "mv02: spacing outlier" in page  # its warning is shown
    # the same figures exist as PNG files for MLflow
    assert report.figures_dir == tmp_path / "qc" / "report_figures"
    assert set(report.figures) == set(FIGURES)
    for path in [*report.figures.values(), *report.thumbnails.values()]:
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_report_without_the_profile_cache_reads_the_volumes(
    small_dataset: Path, tmp_path: Path
) -> None:
    profile = profile_dataset(small_dataset, cache_dir=tmp_path / "c1", workers=1, progress=False)
    report = write_qc_report(
        profile, tmp_path / "r.html", figures_dir=tmp_path / "figs", cache_dir=tmp_path / "empty"
    )
    assert sorted(report.thumbnails) == [v.name for v in profile.volumes]
    assert (tmp_path / "figs" / "thumbnails" / "mv03.png").is_file()


def test_report_lists_quarantined_files(bad_dataset: Path, tmp_path: Path) -> None:
    profile = profile_dataset(bad_dataset, workers=1, progress=False)
    page = write_qc_report(profile, tmp_path / "r.html").html.read_text()
    assert "bad_nifti2.nii.gz" in page and "NIfTI-2 file" in page


def test_overlay_paints_the_label_red() -> None:
    thumb = np.full((4, 3), 100, np.uint8)
    mask = np.zeros((4, 3), bool)
    mask[1, 2] = True
    rgb = overlay(thumb, mask)
    assert rgb.shape == (3, 4, 3)  # (y, x, rgb)
    assert tuple(rgb[0, 0]) == (100, 100, 100)
    red, green, _ = rgb[2, 1]
    assert red > 100 > green
