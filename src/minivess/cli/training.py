"""CLI commands of this area (registered by :mod:`minivess.cli`): ``train`` and ``evaluate``.

``minivess train`` works the same on a laptop, an SSH server, a spot VM (SkyPilot runs this exact
command) and under ``torchrun -m minivess train ...``. A run stopped by SIGTERM writes its
checkpoint and exits with code 75: rerun the same command to resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    data: Annotated[Path, typer.Option(help="Dataset folder (MiniVess or nnU-Net layout).")],
    model: Annotated[str, typer.Option(help="Model profile name, e.g. dynunet.")] = "dynunet",
    loss: Annotated[str, typer.Option(help="dicece, dice, focal or cldice.")] = "dicece",
    epochs: Annotated[int, typer.Option(help="Total epochs (a resumed run continues).")] = 2,
    fold: Annotated[int, typer.Option(help="Validation fold of the k-fold split.")] = 0,
    n_folds: Annotated[int, typer.Option(help="Number of folds.")] = 3,
    checkpoint_dir: Annotated[
        str, typer.Option(help="Local folder or s3://bucket/prefix for checkpoints.")
    ] = "checkpoints",
    seed: Annotated[int, typer.Option(help="Seed of split, weights, sampling, augmentation.")] = 0,
    plan: Annotated[
        Path | None, typer.Option(help="Use this plan.json instead of planning for this machine.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Plan override key=value, e.g. --set batch_size=2 (repeatable)."
        ),
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(help="Write the run summary (JSON) to this file.")
    ] = None,
) -> None:
    """Train one model (one loss, one fold), resuming from CHECKPOINT_DIR/last.pt if present."""
    _stop_on_sigterm_while_starting()
    from minivess.training.runner import run_train

    code = run_train(
        data=data,
        model=model,
        cfg_fields={
            "loss": loss,
            "epochs": epochs,
            "fold": fold,
            "n_folds": n_folds,
            "checkpoint_dir": checkpoint_dir,
            "seed": seed,
        },
        plan_path=plan,
        overrides=set_,
        summary_json=summary_json,
    )
    if code:
        raise typer.Exit(code)


def evaluate(
    data: Annotated[Path, typer.Option(help="Test dataset folder (volumes with labels).")],
    checkpoints: Annotated[
        list[str],
        typer.Option(help="Checkpoint files or run folders (local or s3://), repeatable."),
    ],
    out: Annotated[Path, typer.Option(help="Folder for tables, figures and report.json.")] = Path(
        "evaluation"
    ),
    train_data: Annotated[
        Path | None,
        typer.Option(
            help="The dataset the members trained on: adds the threshold baseline row, learned "
            "on their training volumes."
        ),
    ] = None,
) -> None:
    """Per-volume metrics, CIs, loss × fold table, ensembles, calibration and figures."""
    from minivess.evaluation import evaluate as run_evaluation

    report = run_evaluation(data, checkpoints, out, train_data_dir=train_data)
    typer.echo(report.table_markdown)
    typer.echo(
        f"champion: {report.champion.name} (Dice {report.champion.dice:.4f}); report in {out}"
    )


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add this area's commands to the root app and the ``data`` sub-app."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)


def _stop_on_sigterm_while_starting() -> None:
    """Until training installs its own handler, SIGTERM exits 75 at once (nothing to save)."""
    import signal
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: object) -> None:
        from minivess.training.loop import PREEMPTED_EXIT_CODE

        print(
            "preempted (SIGTERM) while starting, before any work; rerun the same command "
            f"(exit code {PREEMPTED_EXIT_CODE}).",
            file=sys.stderr,
        )
        raise SystemExit(PREEMPTED_EXIT_CODE)

    signal.signal(signal.SIGTERM, stop)
