"""Flow 2, the data scientist: find the data run, plan, validate, train the loss × fold grid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task

from minivess.data.schema import DatasetProfile
from minivess.experiment import ExperimentConfig, load_experiment
from minivess.orchestration import common
from minivess.planning.plan import TrainingPlan
from minivess.settings import Settings, checkpoint_dir
from minivess.tracking.contract import Artifact, Flow, Tag


@dataclass(frozen=True)
class MemberResult:
    """One trained grid cell."""

    run_id: str
    loss: str
    fold: int
    best_metric: float
    checkpoint: str
    resumed_from_epoch: int | None


@dataclass(frozen=True)
class TrainFlowResult:
    upstream_run_id: str
    plan_hash: str
    members: list[MemberResult] = field(default_factory=list)


@task
def find_data_run(settings: Settings, data_run_id: str | None) -> tuple[str, DatasetProfile]:
    """The upstream data run (given, or the newest) and its profile, read from MLflow."""
    from minivess.tracking import mlflow_adapter as mfa

    client = mfa.connect(settings)
    run = client.get_run(data_run_id) if data_run_id else mfa.find_upstream(client, Flow.DATA)
    text = mfa.load_text(client, run.info.run_id, Artifact.PROFILE_JSON.value)
    return run.info.run_id, DatasetProfile.model_validate_json(text)


@task
def make_training_plan(prof: DatasetProfile, exp: ExperimentConfig) -> TrainingPlan:
    """Plan for this machine (or ``exp.hardware``), honouring the experiment's overrides."""
    from minivess.planning import make_plan

    res = exp.training.resampling  # the experiment's, else configs/data/defaults.yaml
    plan = make_plan(
        prof,
        exp.model,
        hardware=exp.hardware,
        overrides=exp.plan.model_dump(exclude_unset=True) or None,
        target_spacing=res.target_spacing if res.enabled else None,  # plan on resampled shapes
    )
    common.table_artifact(
        "minivess-plan-decisions",
        [d.model_dump(mode="json") | {"value": str(d.value)} for d in plan.decisions],
        f"Training plan {plan.plan_hash} for {exp.model}",
    )
    return plan


@task
def validate_data(data_dir: str) -> int:
    """The validation gate before the first batch: refuses a dataset with no usable volume."""
    from minivess.data.gate import validate_dataset

    usable, _rejected = validate_dataset(Path(data_dir))
    return len(usable)


class _ProgressTracker:
    """Forwards to the MLflow tracker and mirrors the epoch count into a Prefect progress bar."""

    def __init__(self, inner: Any, epochs: int) -> None:
        from prefect.artifacts import create_progress_artifact

        self.inner, self.epochs = inner, epochs
        # create_progress_artifact is sync-or-async dispatched; in a sync flow it returns the id
        self.artifact_id: Any = create_progress_artifact(0.0, description="training epochs")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from prefect.artifacts import update_progress_artifact

        self.inner.log_metrics(metrics, step=step)
        if step is not None and self.artifact_id is not None:
            update_progress_artifact(self.artifact_id, min(100.0, 100.0 * (step + 1) / self.epochs))


def log_member_model(uri: str, settings: Settings) -> str:
    """Log a checkpoint (local or s3://) as the active run's pyfunc model; returns its URI.

    The logged model (``models:/<model_id>``) is the member's only copy in MLflow: the analysis
    flow downloads it and the registry points at it. The run's :attr:`Tag.MODEL_URI` names it.
    """
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.training.checkpoint import read_bytes

    return mfa.log_segmenter_model(read_bytes(uri, settings.storage.s3.endpoint_url))


@task
def train_member(
    data_dir: str, plan: TrainingPlan, cfg: Any, upstream: str, dataset_hash: str,
    settings: Settings, target: str,
) -> MemberResult:  # fmt: skip
    """Train one (loss, fold) cell inside its own tagged MLflow run."""
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.mlflow_tracker import MlflowTracker
    from minivess.training import train
    from minivess.training.config import cell_name

    client = mfa.connect(settings)
    task_id = settings.task_id
    cell = cell_name(cfg.loss, cfg.fold)
    tags = {
        Tag.UPSTREAM_RUN_ID: upstream, Tag.DATASET_HASH: dataset_hash,
        Tag.PLAN_HASH: plan.plan_hash, Tag.TARGET: target, Tag.MODEL: plan.model,
        Tag.LOSS: str(cfg.loss), Tag.FOLD: str(cfg.fold),
    }  # fmt: skip
    if task_id:
        tags[Tag.SKYPILOT_TASK_ID] = task_id
    resume = mfa.resumable_run(client, task_id, str(cfg.loss), cfg.fold)
    with mfa.flow_run(client, settings, Flow.TRAIN, tags=tags, run_name=cell, run_id=resume) as run:
        mfa.log_text(plan.model_dump_json(indent=2), Artifact.PLAN_JSON.value)
        tracker = _ProgressTracker(MlflowTracker(), cfg.epochs)
        summary = train(
            Path(data_dir), plan, cfg, tracker=tracker, progress=True,
            endpoint_url=settings.storage.s3.endpoint_url,
        )  # fmt: skip
        mfa.log_text(summary.model_dump_json(indent=2), Artifact.SUMMARY_JSON.value)
        log_member_model(summary.checkpoint, settings)
        return MemberResult(
            run_id=run.info.run_id, loss=str(cfg.loss), fold=cfg.fold,
            best_metric=float(summary.best_metric), checkpoint=summary.checkpoint,
            resumed_from_epoch=summary.resumed_from_epoch,
        )  # fmt: skip


def grid(exp: ExperimentConfig, plan: TrainingPlan, settings: Settings) -> list[Any]:
    """The experiment's (loss, fold) cells.

    Checkpoints go under ``<root>/<experiment>/<key>/<loss>-fold<k>``, ``key`` from
    :func:`minivess.settings.checkpoint_key` (task id on a managed job, else the plan hash).
    """
    from minivess.training.config import expand_grid

    root = checkpoint_dir(
        settings.checkpoint_root, exp.name, settings.checkpoint_key(plan.plan_hash)
    )
    raw: dict[str, Any] = {"checkpoint_dir": root, **exp.training.model_dump(exclude_unset=True)}
    return expand_grid(raw, f"experiment '{exp.name}': training")


@flow(name="minivess-train", log_prints=True)
def train_flow(
    workspace: str | None = None, experiment: str | None = None, data_run_id: str | None = None
) -> TrainFlowResult:
    """Plan and train the experiment grid on the data of the upstream data run."""
    settings = common.settings_for(workspace)
    exp = load_experiment(experiment)
    upstream, prof = find_data_run(settings, data_run_id)
    plan = make_training_plan(prof, exp)
    validate_data(prof.data_dir)
    members = [
        train_member(prof.data_dir, plan, cfg, upstream, prof.dataset_hash, settings, exp.target)
        for cfg in grid(exp, plan, settings)
    ]
    return TrainFlowResult(upstream_run_id=upstream, plan_hash=plan.plan_hash, members=members)
