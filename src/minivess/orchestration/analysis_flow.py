"""Flow 3, the research scientist: evaluate members, ensemble, compare, register the champion."""

from __future__ import annotations

import logging
import tempfile
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
def fetch_members(runs: list[Any], dst: Path) -> dict[str, str]:
    """Download each member's best checkpoint; returns member name -> local path."""
    import mlflow

    members = {}
    for run in runs:
        name = f"{run.data.tags[Tag.LOSS.value]}-fold{run.data.tags[Tag.FOLD.value]}"
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=Artifact.CHECKPOINTS.value,
            dst_path=str(dst / name),
        )  # fmt: skip
        members[name] = str(next(Path(path).glob("*.pt")))
    return members


@task
def data_dir_of(settings: Settings, run: Any) -> str:
    """The dataset of a train run, read from its upstream data run's profile."""
    import mlflow

    from minivess.data.schema import DatasetProfile

    upstream = run.data.tags[Tag.UPSTREAM_RUN_ID.value]
    text = mlflow.artifacts.load_text(f"runs:/{upstream}/{Artifact.PROFILE_JSON}")
    return DatasetProfile.model_validate_json(text).data_dir


#: Volumes in the synthetic held-out set (10: enough for a t-interval of useful width; 3 gave
#: intervals that were mostly noise) and the seed offset that keeps it apart from training.
HELD_OUT_VOLUMES = 10
HELD_OUT_SEED_OFFSET = 1000


@task
def evaluation_data(exp: ExperimentConfig, settings: Settings, train_data_dir: str) -> str:
    """Where the members are scored: a held-out set, never silently the training data.

    ``data.test_dir`` when given; for the synthetic default, a synthetic held-out set drawn with
    another seed; otherwise the training data itself, with a warning that scores are optimistic.
    """
    from minivess.data.synth import synthesize

    if exp.data.test_dir:
        return str(exp.data.test_dir)
    synthetic = Path(train_data_dir).resolve() == settings.data_dir.resolve()
    if exp.data.dir is None and synthetic:
        test_dir = settings.workspace / "data-test"
        if not any(test_dir.glob("raw/*.nii*")):
            synthesize(test_dir, scale=exp.data.synth_scale, n_volumes=HELD_OUT_VOLUMES,
                       seed=exp.data.seed + HELD_OUT_SEED_OFFSET, progress=False)  # fmt: skip
        return str(test_dir)
    log.warning("analysis: no data.test_dir in experiment '%s'; scoring on the training data "
                "%s, so the figures are optimistic", exp.name, train_data_dir)  # fmt: skip
    return train_data_dir


@task
def evaluate_members(
    data_dir: str, members: dict[str, str], out_dir: Path, train_data_dir: str
) -> EvaluationReport:
    """Per-volume metrics, CIs, ensembles, calibration, figures, and the threshold baseline
    learned on the members' training volumes."""
    from minivess.evaluation import evaluate

    return evaluate(Path(data_dir), list(members.values()), out_dir, Path(train_data_dir))


def deployable(report: Any) -> tuple[str, str, dict[str, float]]:
    """The champion if it is one checkpoint, else the best single-checkpoint model.

    An ensemble of several checkpoints can win the comparison but cannot be served as one
    network; the registry then gets the best member or soup, and the run records both names.
    """
    from minivess.evaluation import Kind

    champ = report.champion
    if champ.checkpoint:
        name, ckpt = champ.name, champ.checkpoint
    else:
        singles = {m.name: m.uri for m in report.members}
        if report.soup_checkpoint:
            singles[Kind.SOUP.value] = report.soup_checkpoint
        name = max(singles, key=lambda n: report.summary[n]["dice"].mean)
        ckpt = singles[name]
    metrics = {k: ci.mean for k, ci in report.summary[name].items() if ci.n > 0}
    return name, ckpt, metrics


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
    import mlflow

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
        mlflow.log_dict({"train_runs": [r.info.run_id for r in runs]}, "analysis/members.json")
        mlflow.log_param("evaluation_data", test_dir)
        mlflow.log_artifacts(str(report.out_dir), Artifact.COMPARISON.value)
        name, ckpt, metrics = deployable(report)
        mlflow.log_metrics({f"champion_{k}": v for k, v in metrics.items()})
        version_tags = {"champion": name, "best_overall": report.champion.name}
        warning = below_baseline(report, metrics)
        if warning:
            log.warning("registering %s with a warning: %s", name, warning)
            version_tags[Tag.BELOW_BASELINE.value] = warning
        mlflow.set_tags(version_tags)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / BEST
            local.write_bytes(read_bytes(ckpt))
            mlflow.log_artifact(str(local), CHAMPION_DIR)
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
    settings = common.settings_for(workspace)
    exp = load_experiment(experiment)
    runs = find_train_runs(settings, train_run_ids)
    members = fetch_members(runs, settings.analysis_dir / "members")
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
