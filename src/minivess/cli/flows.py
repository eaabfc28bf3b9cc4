"""CLI of the orchestration area: the main job, single flows, deployments, the local stack, DVC."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

Workspace = Annotated[
    Path | None,
    typer.Option(help="Workspace directory for all outputs (default ./workspace)."),
]
ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", help="Experiment YAML, or a name in configs/experiments/."),
]


class Backend(StrEnum):
    sqlite = "sqlite"
    postgresql = "postgresql"


class ArtifactStore(StrEnum):
    local = "local"
    s3 = "s3"
    proxied = "proxied"


class FlowName(StrEnum):
    data = "data"
    train = "train"
    analysis = "analysis"
    deploy = "deploy"
    poll = "poll"


def experiment(config: ConfigOpt = None, workspace: Workspace = None) -> None:
    """Run the main job: data -> train -> analysis -> deploy, as Prefect flows."""
    from minivess.experiment import load_experiment
    from minivess.settings import load_settings

    load_experiment(config)  # a bad config fails here, before Prefect starts
    ws = str(load_settings(workspace).workspace)
    typer.echo(f"workspace: {ws}")
    from minivess.orchestration.common import persistent_prefect_api, prefect_defaults
    from minivess.orchestration.experiment_flow import experiment_flow, print_summary

    server = persistent_prefect_api()  # read before the flow: a temporary server is no server
    with prefect_defaults():
        result = experiment_flow(experiment=config, workspace=ws)
    print_summary(result, prefect_server=server)


def run_flow(
    name: Annotated[FlowName, typer.Argument(help="Which flow to run.")],
    config: ConfigOpt = None,
    workspace: Workspace = None,
    data_dir: Annotated[Path | None, typer.Option(help="Dataset (data/poll flows).")] = None,
) -> None:
    """Run one persona flow alone; it finds its upstream through MLflow."""
    from minivess.experiment import load_experiment
    from minivess.orchestration.common import prefect_defaults
    from minivess.orchestration.experiment_flow import run_single_flow

    if name not in (FlowName.data, FlowName.poll) or config:
        load_experiment(config)  # a bad config fails here, before Prefect starts
    with prefect_defaults():
        result = run_single_flow(name.value, experiment=config, workspace=workspace,
                                 data_dir=str(data_dir) if data_dir else None)  # fmt: skip
    typer.echo(result)


def deploy_flows(
    prefect_yaml: Annotated[Path, typer.Option(help="Prefect project file.")] = Path(
        "prefect.yaml"
    ),
    name: Annotated[str | None, typer.Option(help="Only this deployment.")] = None,
) -> None:
    """Register the flows' deployments (prefect.yaml) with the Prefect server in PREFECT_API_URL."""
    from minivess.orchestration.deployments import deploy_all

    for line in deploy_all(prefect_yaml, name):
        typer.echo(line)


def stack_up(
    workspace: Workspace = None,
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one.")] = 0,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    backend: Annotated[Backend, typer.Option(help="Backend store.")] = Backend.sqlite,
    artifacts: Annotated[ArtifactStore, typer.Option(help="Artifact store.")] = ArtifactStore.local,
    auth: Annotated[
        bool, typer.Option(help="MLflow basic auth (MLFLOW_AUTH_ADMIN_PASSWORD).")
    ] = False,
) -> None:
    """Start a local `mlflow server` in the background and health-check it."""
    from minivess.settings import load_settings
    from minivess.tracking.stack import StackOptions, stack_up

    opts = StackOptions(
        host=host, port=port, backend=backend.value, artifacts=artifacts.value, auth=auth
    )
    info = stack_up(opts, load_settings(workspace))
    typer.echo(f"MLflow tracking server: {info.url} (pid {info.pid}, log {info.log})")
    typer.echo(f"Use it with: export MLFLOW_TRACKING_URI={info.url}")


def stack_down(workspace: Workspace = None) -> None:
    """Stop the workspace's tracking server."""
    from minivess.settings import load_settings
    from minivess.tracking.stack import stack_down

    info = stack_down(load_settings(workspace))
    typer.echo(f"stopped {info.url} (pid {info.pid})" if info else "no tracking server running")


def stack_status(workspace: Workspace = None) -> None:
    """Show the workspace's tracking server, if any."""
    from minivess.settings import load_settings
    from minivess.tracking.stack import stack_status

    info = stack_status(load_settings(workspace))
    typer.echo(f"running at {info.url} (pid {info.pid})" if info else "no tracking server running")
    if info is None:
        raise typer.Exit(1)


def data_version(
    data_dir: Annotated[Path, typer.Argument(help="Dataset directory to version.")],
    project: Annotated[
        Path | None, typer.Option(help="DVC project (default: parent of DATA_DIR).")
    ] = None,
    workspace: Workspace = None,
) -> None:
    """`dvc add` + `dvc push` the dataset to the configured remote (local dir or S3)."""
    from minivess.settings import load_settings
    from minivess.versioning.dvc import remote_url, version_data

    settings = load_settings(workspace)
    v = version_data(data_dir, settings, project)
    typer.echo(
        f"versioned {data_dir} -> {v.dvc_file} (hash {v.data_hash}, remote {remote_url(settings)})"
    )


def data_pull(
    project: Annotated[Path, typer.Option(help="DVC project to restore.")] = Path("."),
    workspace: Workspace = None,
) -> None:
    """`dvc pull` the project's tracked data from the configured remote."""
    from minivess.settings import load_settings
    from minivess.versioning.dvc import pull_data

    for path in pull_data(project, load_settings(workspace)):
        typer.echo(f"restored {path}")


def data_changed(
    data_dir: Annotated[Path, typer.Argument(help="The dataset that changed.")],
    project: Annotated[
        Path | None, typer.Option(help="DVC project (default: parent of DATA_DIR).")
    ] = None,
) -> None:
    """Emit the `minivess.data.changed` Prefect event (triggers the data-flow deployment)."""
    from minivess.orchestration.polling import emit_data_changed

    event = emit_data_changed(data_dir, project)
    typer.echo(f"emitted {event.event} for {event.resource.id} (event {event.id})")


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add this area's commands to the root app and the ``data`` sub-app."""
    app.command("experiment")(experiment)
    flows_app = typer.Typer(help="Run or deploy the Prefect flows.", no_args_is_help=True)
    flows_app.command("run")(run_flow)
    flows_app.command("deploy")(deploy_flows)
    app.add_typer(flows_app, name="flows")
    stack_app = typer.Typer(help="A local MLflow tracking server.", no_args_is_help=True)
    stack_app.command("up")(stack_up)
    stack_app.command("down")(stack_down)
    stack_app.command("status")(stack_status)
    app.add_typer(stack_app, name="stack")
    data_app.command("version")(data_version)
    data_app.command("pull")(data_pull)
    data_app.command("changed")(data_changed)
