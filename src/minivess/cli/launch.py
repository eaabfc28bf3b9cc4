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
    rehearse: Annotated[
        bool,
        typer.Option(
            "--rehearse",
            help="Run the rendered task here as SkyPilot's node would (fresh HOME, "
            "~/sky_workdir, SKYPILOT_* vars, a loopback S3 bucket), uninterrupted and with "
            "--preempt preemptions; exit 0 when the metrics match. For a serve target: one "
            "replica against a loopback MLflow registry, probed as SkyServe does, then "
            "authenticated and unauthenticated requests.",
        ),
    ] = False,
    nodes: Annotated[
        int | None, typer.Option(help="Number of nodes (overrides the target's num_nodes).")
    ] = None,
    preempt: Annotated[
        int, typer.Option(help="--rehearse: preemptions to inject (SIGTERM, grace, SIGKILL).")
    ] = 0,
    grace: Annotated[
        float, typer.Option(help="--rehearse: seconds between SIGTERM and SIGKILL.")
    ] = 30.0,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="--rehearse: write the report here.")
    ] = None,
    reuse_venv: Annotated[
        Path | None,
        typer.Option(
            help="--rehearse: link this already-built venv as the node's ~/.minivess/venv "
            "(setup's installs become no-ops); default: the full node setup (minutes)."
        ),
    ] = None,
    system_python: Annotated[
        Path | None,
        typer.Option(help="--rehearse: the node image's python3 (e.g. a Python 3.10)."),
    ] = None,
) -> None:
    """Render the plan as a SkyPilot task for a target, validate it with SkyPilot, launch it."""
    if not (rehearse or check):
        # SkyPilot's import (the floor of a dry run) starts before anything else is imported.
        from minivess.launch.skycheck import SkyValidator, default_runtime_dir

        early_validator = SkyValidator(default_runtime_dir())
    from minivess.launch.launcher import DEFAULT_OUT, LaunchOptions, execute, prepare

    if rehearse:
        from minivess.launch.rehearse import RehearsalOptions, print_report
        from minivess.launch.rehearse import rehearse as run_rehearsal
        from minivess.launch.rehearse_serve import (
            is_serve_target,
            print_serve_report,
            rehearse_serve,
        )

        ropts = RehearsalOptions(
            target=target,
            config=config,
            data=data,
            model=model,
            nodes=nodes,
            preempt=preempt,
            grace_s=grace,
            json_path=json_out,
            reuse_venv=reuse_venv,
            system_python=system_python,
        )
        if is_serve_target(target):  # one SkyServe replica: readiness probe, auth
            serve_report = rehearse_serve(ropts)
            print_serve_report(serve_report)
            raise typer.Exit(0 if serve_report.passed else 1)
        report = run_rehearsal(ropts)
        print_report(report)
        raise typer.Exit(0 if report.passed else 1)
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
        num_nodes=nodes,
    )
    with early_validator:
        prepared = prepare(opts, validator=early_validator)
    typer.echo(f"rendered {prepared.yaml_path} (plan: {prepared.plan_path})")
    if prepared.pool_file is not None:
        typer.echo(f"ssh pool entry: {prepared.pool_file}")
    typer.echo(prepared.command)
    if not dry_run:
        raise typer.Exit(execute(prepared))


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add this area's commands to the root app and the ``data`` sub-app."""
    app.command("launch")(launch)
