"""CLI commands of this area (registered by :mod:`minivess.cli`): ``data synth``, ``data profile``.

Command bodies parse, make one library call and print; heavy imports stay inside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write raw/, seg/ and json/ into.")],
    n_volumes: Annotated[
        int | None, typer.Option(help="Number of volumes (default: 6 small, 70 full).", min=1)
    ] = None,
    scale: Annotated[
        str, typer.Option(help="small (default: quick demo) or full (70 × 512×512×Z).")
    ] = "small",
    seed: Annotated[int, typer.Option(help="Dataset seed; the same seed gives the same data.")] = 0,
) -> None:
    """Write a deterministic MiniVess-like dataset (the embedded default) to OUT_DIR."""
    from minivess.data.synth import synthesize
    from minivess.errors import DataError

    if scale not in ("small", "full"):
        raise DataError(f"--scale {scale!r}: use 'small' or 'full'.")
    pairs = synthesize(out_dir, scale=scale, n_volumes=n_volumes, seed=seed)  # type: ignore[arg-type]
    typer.echo(f"wrote {len(pairs)} volumes ({scale} scale, seed {seed}) to {out_dir}")


def profile(
    data_dir: Annotated[
        Path, typer.Argument(help="Dataset folder (raw/+seg/ or imagesTr/+labelsTr/).")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the profile (with 'volumes') as JSON here.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the QC report (self-contained HTML) here.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: CPU cores).", min=1)
    ] = None,
) -> None:
    """Profile DATA_DIR at native resolution: shapes, spacings, intensities, quarantined files.

    Exits 0 (with warnings) when at least one volume is usable, 2 with the reasons when none is.
    """
    from minivess.data.profiler import profile_dataset
    from minivess.data.summary import print_profile

    result = profile_dataset(data_dir, workers=workers)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(result.model_dump_json(indent=2) + "\n")
    print_profile(result)
    if json_out is not None:
        typer.echo(f"profile JSON: {json_out}")
    if report is not None:
        from minivess.data.report import write_qc_report

        written = write_qc_report(result, report)
        typer.echo(f"QC report: {written.html} (figures in {written.figures_dir})")


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add this area's commands to the root app and the ``data`` sub-app."""
    data_app.command("synth")(synth)
    data_app.command("profile")(profile)
