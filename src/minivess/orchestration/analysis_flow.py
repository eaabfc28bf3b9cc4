"""Flow 3, the research scientist: evaluate members, ensemble, compare, register the champion."""

from __future__ import annotations

import json
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
    """Download each member's logged model; returns member name -> its local checkpoint.

    Raises:
        ContractError: a train run names no logged model (``minivess.model_uri`` tag).
    """
    from minivess.errors import ContractError
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.pyfunc import checkpoint_in
    from minivess.training.config import cell_name

    client = mfa.connect(settings)
    members = {}
    for run in runs:
        name = cell_name(run.data.tags[Tag.LOSS.value], int(run.data.tags[Tag.FOLD.value]))
        model_uri = run.data.tags.get(Tag.MODEL_URI.value)
        if not model_uri:
            raise ContractError(f"train run {run.info.run_id} has no '{Tag.MODEL_URI.value}' tag "
                                "(no logged model); re-run the train flow.")  # fmt: skip
        members[name] = str(checkpoint_in(mfa.download_model(client, model_uri, dst / name)))
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


def _champion_model(
    ckpt: str, members: dict[str, str], runs: list[Any], analysis_run_id: str
) -> tuple[str, str]:
    """(model URI, run id) of the champion: a member's own logged model when it is one, else a
    new pyfunc model (the soup) logged in the active analysis run."""
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.training.config import cell_name

    by_name = {cell_name(r.data.tags[Tag.LOSS.value], int(r.data.tags[Tag.FOLD.value])): r
               for r in runs}  # fmt: skip
    for name, local in members.items():
        if Path(local).resolve() == Path(ckpt).resolve():
            run = by_name[name]
            return run.data.tags[Tag.MODEL_URI.value], run.info.run_id
    return mfa.log_segmenter_model(Path(ckpt).read_bytes()), analysis_run_id


@task
def log_and_register(
    report: Any, runs: list[Any], members: dict[str, str], test_dir: str, settings: Settings
) -> tuple[str, str]:
    """Log the analysis run, register the champion's logged model and alias it ``@champion``.

    The version's description holds its scores and plan; a member's model is registered where
    the train run logged it (no second copy of the checkpoint).
    """
    from minivess.evaluation.report import deployable
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.contract import CHAMPION_ALIAS
    from minivess.training.checkpoint import BEST, load_state

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
        run_id = run.info.run_id
        model_uri, model_run = _champion_model(ckpt, members, runs, run_id)
    plan = json.loads(load_state(ckpt)["plan"])
    plan["plan_hash"] = tags[Tag.PLAN_HASH]
    version = mfa.register_model(
        client, model_uri, run_id=model_run, expected_files=[f"artifacts/{BEST}", "MLmodel"],
        metrics=metrics, alias=CHAMPION_ALIAS,
        description=mfa.version_description(name, metrics, plan, test_dir),
        tags={**version_tags, Tag.UPSTREAM_RUN_ID.value: run_id},
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
    run_id, uri = log_and_register(report, runs, members, test_dir, settings)
    name, _, metrics = deployable(report)
    return AnalysisFlowResult(
        run_id=run_id, champion=name, champion_metrics=metrics,
        table_markdown=report.table_md, registered_uri=uri,
        baseline_verdict=baseline_verdict(name, report, metrics),
    )  # fmt: skip
