"""Console summary of a :class:`~minivess.data.schema.DatasetProfile` (rich tables)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from minivess.data.schema import DatasetProfile


def _fmt(values: tuple[float, ...]) -> str:
    return "×".join(f"{v:.3g}" for v in values)


def print_profile(profile: DatasetProfile, console: Console | None = None) -> None:
    """Print the dataset summary, its warnings and its quarantined files."""
    out = console or Console()
    table = Table(title=f"Dataset profile: {profile.data_dir}", show_header=False)
    rows = [
        ("volumes", str(profile.n_volumes)),
        (
            "min / median / max shape (x×y×z)",
            f"{_fmt(profile.min_shape)} / {_fmt(profile.median_shape)} / {_fmt(profile.max_shape)}",
        ),
        (
            "spacing range (x×y×z)",
            f"{_fmt(profile.spacing_range[0])} … {_fmt(profile.spacing_range[1])}",
        ),
        ("anisotropic", str(profile.is_anisotropic)),
        ("size (float32)", f"{profile.total_size_gb:.3f} GB"),
        ("rejected", str(len(profile.rejected))),
        ("dataset hash", profile.dataset_hash[:16]),
        ("volumes read / cached", f"{profile.n_scanned} / {profile.n_cached}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)
    for warning in profile.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    for item in profile.rejected:
        out.print(
            f"[red]rejected:[/] {Path(item.file).name}: {item.reason}",
            highlight=False,
            soft_wrap=True,
        )
