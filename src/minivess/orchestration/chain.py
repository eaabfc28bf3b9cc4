"""The training chain, flows 2 -> 4 on one data run: run by the main job and by the data poller.

Kept apart from :mod:`minivess.orchestration.experiment_flow` so the poller does not import the
main job (which imports the poller for ``minivess flows run poll``).
"""

from __future__ import annotations

from dataclasses import dataclass

from minivess.errors import DeployRefused
from minivess.experiment import load_experiment
from minivess.orchestration.analysis_flow import AnalysisFlowResult, analysis_flow
from minivess.orchestration.deploy_flow import DeployFlowResult, deploy_flow
from minivess.orchestration.train_flow import TrainFlowResult, train_flow


@dataclass(frozen=True)
class ChainResult:
    """Train -> analysis -> deploy, as run after a data flow."""

    train: TrainFlowResult
    analysis: AnalysisFlowResult
    deploy: DeployFlowResult | None
    deploy_refused: str | None = None


def training_chain(workspace: str | None, experiment: str | None, data_run_id: str) -> ChainResult:
    """Flows 2 -> 4 on the data run ``data_run_id``."""
    exp = load_experiment(experiment)
    train = train_flow(workspace=workspace, experiment=experiment, data_run_id=data_run_id)
    analysis = analysis_flow(
        workspace=workspace, experiment=experiment, train_run_ids=[m.run_id for m in train.members]
    )
    deploy, refused = None, None
    if exp.deploy.enabled:
        try:
            deploy = deploy_flow(workspace=workspace, experiment=experiment)
        except DeployRefused as exc:  # the model is registered (with its warning), not served
            refused = str(exc)
    return ChainResult(train=train, analysis=analysis, deploy=deploy, deploy_refused=refused)
