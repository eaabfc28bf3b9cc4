"""The MLflow contract between flows: experiment names, tag names and artifact paths.

Producers and consumers import these constants; no tag or experiment string is spelled anywhere
else. A consumer finds its upstream with :func:`minivess.tracking.mlflow_adapter.find_upstream`
(``MlflowClient.search_runs`` by tag), never by walking folders.
"""

from __future__ import annotations

from enum import StrEnum


class Flow(StrEnum):
    """Value of the :attr:`Tag.FLOW` tag: which persona flow wrote the run."""

    DATA = "data"  # flow 1: validate, profile and version the dataset
    TRAIN = "train"  # flow 2: the losses x folds grid, one child run per cell
    ANALYSIS = "analysis"  # flow 3: held-out evaluation, ensembles, the champion
    DEPLOY = "deploy"  # flow 4: export, BentoML build, smoke test, the service task


class Tag(StrEnum):
    """Tags every minivess MLflow run carries (``SKYPILOT_TASK_ID`` only on cloud runs)."""

    FLOW = "minivess.flow"
    DATASET_HASH = "minivess.dataset_hash"
    UPSTREAM_RUN_ID = "minivess.upstream_run_id"
    PLAN_HASH = "minivess.plan_hash"
    TARGET = "minivess.target"
    SKYPILOT_TASK_ID = "minivess.skypilot_task_id"
    MODEL = "minivess.model"
    LOSS = "minivess.loss"
    FOLD = "minivess.fold"
    STATUS = "minivess.status"
    #: On a model version whose Dice does not beat the threshold baseline; its value says by
    #: how much. The deploy flow refuses such a version unless ``deploy.force`` is set.
    BELOW_BASELINE = "minivess.warning.below_baseline"
    #: On a train run: ``models:/<model_id>`` of the member's logged pyfunc model.
    MODEL_URI = "minivess.model_uri"


#: Experiment name per flow.
EXPERIMENTS: dict[Flow, str] = {
    Flow.DATA: "minivess-data",
    Flow.TRAIN: "minivess-train",
    Flow.ANALYSIS: "minivess-analysis",
    Flow.DEPLOY: "minivess-deploy",
}


class Artifact(StrEnum):
    """Artifact paths inside a run."""

    PROFILE_JSON = "profile/dataset_profile.json"
    QC_REPORT = "profile/qc_report.html"
    QC_FIGURES = "profile/figures"
    PLAN_JSON = "plan/plan.json"
    DECISIONS = "plan/decisions.md"
    CHECKPOINTS = "checkpoints"
    SUMMARY_JSON = "train/summary.json"
    COMPARISON = "analysis"


#: Environment variable SkyPilot sets in a managed job; it stays the same across recoveries, so
#: a recovered spot job finds its checkpoints and its MLflow run again.
SKYPILOT_TASK_ID_ENV = "SKYPILOT_TASK_ID"

#: Name of the registered model in the MLflow Model Registry.
REGISTERED_MODEL = "minivess-segmenter"

#: Registry alias of the version the analysis flow chose: ``models:/minivess-segmenter@champion``.
CHAMPION_ALIAS = "champion"
