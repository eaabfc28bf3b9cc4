"""Flow 3, the research scientist: evaluate members, ensemble, compare, register the champion."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, task

from minivess.experiment import ExperimentConfig, load_experiment
from minivess.orchestration import common
from minivess.settings import Settings
from minivess.tracking.contract import Artifact, Flow, Tag

if TYPE_CHECKING:
    from minivess.evaluation.report import EvaluationReport

#: Folder of the analysis run that holds the champion's files (what the registry points at).
CHAMPION_DIR = "champion"


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisFlowResult:
    run_id: str
    champion: str
    champion_metrics: dict[str, float]
    table_markdown: str
    registered_uri: str
    baseline_verdict: str = ""


@task
def find_train_runs(settings: Settings, train_run_ids: list[str] | None) -> list[Any]:
    """The given train runs, or every finished run of the newest train run's data and plan."""
    from minivess.tracking import mlflow_adapter as mfa

    client = mfa.connect(settings)
    if train_run_ids:
        return [client.get_run(r) for r in train_run_ids]
    newest = mfa.find_upstream(client, Flow.TRAIN)
    keys = (Tag.UPSTREAM_RUN_ID.value, Tag.PLAN_HASH.value)
    return mfa.find_runs(client, Flow.TRAIN, tags={k: newest.data.tags[k] for k in keys})


@task
def fetch_members(settings: Settings, runs: list[Any], dst: Path) -> dict[str, str]:
    """Download each member's best checkpoint; returns member name -> local path."""
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.training.config import cell_name

    client = mfa.connect(settings)
    members = {}
    for run in runs:
        name = cell_name(run.data.tags[Tag.LOSS.value], int(run.data.tags[Tag.FOLD.value]))
        path = mfa.download_run_artifacts(
            client, run.info.run_id, Artifact.CHECKPOINTS.value, dst / name
        )
        members[name] = str(next(Path(path).glob("*.pt")))
    return members


@task
def data_dir_of(settings: Settings, run: Any) -> str:
    """The dataset of a train run, read from its upstream data run's profile."""
    from minivess.data.schema import DatasetProfile
    from minivess.tracking import mlflow_adapter as mfa

    upstream = run.data.tags[Tag.UPSTREAM_RUN_ID.value]
    text = mfa.load_text(mfa.connect(settings), upstream, Artifact.PROFILE_JSON.value)
    return DatasetProfile.model_validate_json(text).data_dir


@task
def evaluation_data(exp: ExperimentConfig, settings: Settings, train_data_dir: str) -> str:
    """Where the members are scored (:func:`minivess.evaluation.heldout.evaluation_data_dir`)."""
    from minivess.evaluation.heldout import evaluation_data_dir

    return str(evaluation_data_dir(exp, settings, Path(train_data_dir)))


@task
def evaluate_members(
    data_dir: str, members: dict[str, str], out_dir: Path, train_data_dir: str
) -> EvaluationReport:
    """Per-volume metrics, CIs, ensembles, calibration, figures, and the threshold baseline
    learned on the members' training volumes."""
    from minivess.evaluation import evaluate

    return evaluate(Path(data_dir), list(members.values()), out_dir, Path(train_data_dir))


def below_baseline(report: Any, metrics: dict[str, float]) -> str | None:
    """Why the model to register does not beat the threshold baseline, or None if it does (or
    there is no baseline row)."""
    base = report.champion.baseline_dice
    dice = metrics.get("dice", float("nan"))
    if base is None or dice > base:
        return None
    return f"held-out Dice {dice:.4f} does not beat the threshold baseline's {base:.4f}"


def baseline_verdict(name: str, report: Any, metrics: dict[str, float]) -> str:
    """The summary line: does the registered model beat the threshold baseline?"""
    base = report.champion.baseline_dice
    if base is None:
        return "no baseline row (training data not given)"
    warning = below_baseline(report, metrics)
    if warning:
        return f"WARNING: {name}: {warning} (registered with tag {Tag.BELOW_BASELINE.value})"
    return f"{name} beats the threshold baseline: held-out Dice {metrics['dice']:.4f} vs {base:.4f}"


@task
def log_and_register(
    report: Any, runs: list[Any], test_dir: str, settings: Settings
) -> tuple[str, str]:
    """Log the analysis run, then register the champion once its files are stored."""
    from minivess.evaluation.report import deployable
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.training.checkpoint import BEST, read_bytes

    client = mfa.connect(settings)
    best = runs[0]
    tags = {
        Tag.UPSTREAM_RUN_ID: best.info.run_id,
        Tag.DATASET_HASH: best.data.tags.get(Tag.DATASET_HASH.value, ""),
        Tag.PLAN_HASH: best.data.tags.get(Tag.PLAN_HASH.value, ""),
        Tag.TARGET: best.data.tags.get(Tag.TARGET.value, "local"),
    }
    with mfa.flow_run(client, settings, Flow.ANALYSIS, tags=tags, run_name="analysis") as run:
        mfa.log_dict({"train_runs": [r.info.run_id for r in runs]}, "analysis/members.json")
        mfa.log_params({"evaluation_data": test_dir})
        mfa.log_dir(report.out_dir, Artifact.COMPARISON.value)
        name, ckpt, metrics = deployable(report)
        mfa.log_metrics({f"champion_{k}": v for k, v in metrics.items()})
        version_tags = {"champion": name, "best_overall": report.champion.name}
        warning = below_baseline(report, metrics)
        if warning:
            log.warning("registering %s with a warning: %s", name, warning)
            version_tags[Tag.BELOW_BASELINE.value] = warning
        mfa.set_tags(version_tags)
        data = read_bytes(ckpt, settings.storage.s3.endpoint_url)
        mfa.log_bytes(data, BEST, CHAMPION_DIR)
        run_id = run.info.run_id
    version = mfa.register_model(
        client, run_id, CHAMPION_DIR, expected_files=[BEST], metrics=metrics, tags=version_tags,
    )  # fmt: skip
    return run_id, version.uri


@flow(name="minivess-analysis", log_prints=True)
def analysis_flow(
    workspace: str | None = None,
    experiment: str | None = None,
    train_run_ids: list[str] | None = None,
) -> AnalysisFlowResult:
    """Evaluate and ensemble the trained members; register the champion in the registry."""
    from minivess.evaluation.report import deployable

    settings = common.settings_for(workspace)
    exp = load_experiment(experiment)
    runs = find_train_runs(settings, train_run_ids)
    members = fetch_members(settings, runs, settings.analysis_dir / "members")
    train_data_dir = data_dir_of(settings, runs[0])
    test_dir = evaluation_data(exp, settings, train_data_dir)
    report = evaluate_members(test_dir, members, settings.analysis_dir, train_data_dir)
    common.markdown_artifact("minivess-comparison", report.table_markdown,
                             "Loss x fold comparison with bootstrap 95% CIs")  # fmt: skip
    common.table_artifact("minivess-comparison-table", report.table, "Per-model metrics")
    run_id, uri = log_and_register(report, runs, test_dir, settings)
    name, _, metrics = deployable(report)
    return AnalysisFlowResult(
        run_id=run_id, champion=name, champion_metrics=metrics,
        table_markdown=report.table_md, registered_uri=uri,
        baseline_verdict=baseline_verdict(name, report, metrics),
    )  # fmt: skip
