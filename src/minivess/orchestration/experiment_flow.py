"""The main job: flows 1 -> 4 chained as subflows, and the summary a researcher reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

from minivess.experiment import load_experiment
from minivess.orchestration import common
from minivess.orchestration.analysis_flow import analysis_flow
from minivess.orchestration.chain import ChainResult, training_chain
from minivess.orchestration.data_flow import DataFlowResult, data_flow
from minivess.orchestration.deploy_flow import deploy_flow
from minivess.orchestration.train_flow import train_flow


@dataclass(frozen=True)
class ExperimentResult:
    """Everything the summary prints."""

    workspace: str
    tracking_uri: str
    data: DataFlowResult
    chain: ChainResult
    prefect_run_url: str | None = None  # the experiment flow run in the Prefect UI


@flow(name="minivess-experiment", log_prints=True)
def experiment_flow(
    experiment: str | None = None, workspace: str | None = None
) -> ExperimentResult:
    """Data -> train -> analysis -> deploy on the experiment's data (synthetic by default)."""
    settings = common.settings_for(workspace)
    print(f"workspace: {settings.workspace}")
    exp = load_experiment(experiment)
    data = data_flow(
        data_dir=str(exp.data.dir) if exp.data.dir else None, workspace=str(settings.workspace),
        synth_scale=exp.data.synth_scale, seed=exp.data.seed,
    )  # fmt: skip
    chain = training_chain(str(settings.workspace), experiment, data.run_id)
    from prefect.runtime import flow_run

    return ExperimentResult(
        workspace=str(settings.workspace), tracking_uri=settings.tracking_uri, data=data,
        chain=chain, prefect_run_url=flow_run.ui_url,
    )  # fmt: skip


def run_single_flow(
    name: str, *, experiment: str | None, workspace: Path | None, data_dir: str | None
) -> Any:
    """Run one flow by name (``minivess flows run NAME``)."""
    ws = str(workspace) if workspace else None
    if name == "data":
        return data_flow(data_dir=data_dir, workspace=ws)
    if name == "train":
        return train_flow(workspace=ws, experiment=experiment)
    if name == "analysis":
        return analysis_flow(workspace=ws, experiment=experiment)
    if name == "deploy":
        return deploy_flow(workspace=ws, experiment=experiment)
    from minivess.orchestration.polling import poll_data_flow

    if not data_dir:
        from minivess.errors import ConfigError

        raise ConfigError("`minivess flows run poll` needs --data-dir (the DVC-tracked dataset).")
    return poll_data_flow(data_dir=data_dir, workspace=ws, experiment=experiment)


def print_summary(result: ExperimentResult, prefect_server: str | None = None) -> None:
    """The closing summary: where to look next (plain lines: paths are never wrapped).

    ``prefect_server``: the persistent Prefect API the run went to; its flow run's URL is then
    printed (a temporary server is gone once the command ends, so no URL is printed for it).
    """
    from rich.console import Console

    from minivess.tracking.contract import CHAMPION_ALIAS, REGISTERED_MODEL

    analysis, deploy = result.chain.analysis, result.chain.deploy
    champion = f"models:/{REGISTERED_MODEL}@{CHAMPION_ALIAS}"
    rows = [
        ("Workspace", result.workspace),
        ("Tracking UI", f"mlflow ui --backend-store-uri {result.tracking_uri}"),
        ("QC report", result.data.report_html),
        *(
            [("Prefect run", result.prefect_run_url)]
            if prefect_server and result.prefect_run_url
            else []
        ),
        ("Comparison table", analysis.table_markdown),
        ("Registered model", f"{analysis.registered_uri} ({analysis.champion}), alias {champion}"),
        ("Load it", f'mlflow.pyfunc.load_model("{champion}").predict(volume)'),
        ("Baseline", analysis.baseline_verdict),
    ]
    if result.chain.deploy_refused:
        rows.append(("Not deployed", result.chain.deploy_refused))
    if deploy is not None:
        rows.append(("Deployed", f"exported, parity Dice {deploy.parity_dice:.4f}, "
                                  f"smoke-tested over HTTP (server stopped)"))  # fmt: skip
        rows.append(("Serve it", f"minivess serve --workspace {result.workspace} "
                                  f"--model-uri {champion}"))  # fmt: skip
        rows.append(("SkyServe YAML", deploy.serve_yaml))
    console = Console(soft_wrap=True)
    console.rule("[bold]minivess experiment: done")
    for name, value in rows:
        console.print(f"[bold]{name:<17}[/]{value}", highlight=False)
    table = Path(analysis.table_markdown)
    if table.is_file():
        console.print(table.read_text(), highlight=False)
