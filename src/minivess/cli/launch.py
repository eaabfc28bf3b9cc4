"""CLI commands of this area (registered by :mod:`minivess.cli`): ``launch``.

The body parses, builds :class:`~minivess.launch.launcher.LaunchOptions`, makes one library
call and prints; SkyPilot is only imported inside the library, and only started on a real launch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def launch(
    target: Annotated[
        str, typer.Option(help="local | ssh | spot | serve, or a path to a target YAML.")
    ] = "local",
    data: Annotated[
        Path | None, typer.Option(help="Dataset dir (default: the experiment config's).")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model profile name (default: the experiment config's).")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="Experiment YAML or name (default: default).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan, render, validate and print; start nothing.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the rendered YAML (default sky/rendered).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="ssh only: test every host (user, GPUs, disk).")
    ] = False,
    workspace: Annotated[
        Path | None, typer.Option(help="Workspace dir (default ./workspace).")
    ] = None,
) -> None:
    """Render the plan as a SkyPilot task for a target, validate it with SkyPilot, launch it."""
    from minivess.launch.launcher import DEFAULT_OUT, LaunchOptions, execute, prepare

    if check:
        from minivess.launch.ssh import check_target

        raise typer.Exit(check_target(target))
    opts = LaunchOptions(
        target=target,
        data=data,
        model=model,
        config=config,
        dry_run=dry_run,
        out_dir=out or DEFAULT_OUT,
        workspace=workspace,
    )
    prepared = prepare(opts)
    typer.echo(f"rendered {prepared.yaml_path} (plan: {prepared.plan_path})")
    if prepared.pool_file is not None:
        typer.echo(f"ssh pool entry: {prepared.pool_file}")
    typer.echo(prepared.command)
    if not dry_run:
        raise typer.Exit(execute(prepared))


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add this area's commands to the root app and the ``data`` sub-app."""
    app.command("launch")(launch)
