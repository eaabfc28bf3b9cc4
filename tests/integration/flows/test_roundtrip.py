"""The MLflow contract end to end: the real data flow, then the real train flow that finds it,
against a real `mlflow server` whose artifacts live on a moto S3 server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.tracking.contract import EXPERIMENTS, Flow, Tag

pytestmark = pytest.mark.slow


def test_data_flow_then_train_flow_through_mlflow_server_and_s3(
    prefect_harness: None,
    mlflow_server: str,
    moto_endpoint: str,
    tiny_experiment: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow

    from minivess.orchestration.data_flow import data_flow
    from minivess.orchestration.train_flow import train_flow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MINIVESS_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("SKYPILOT_TASK_ID", "sky-managed-2026-11-26-task-7")
    ws = str(tmp_path / "ws")

    data = data_flow(workspace=ws)
    assert data.n_volumes >= 5 and not data.profile_cached

    # The train flow is given nothing but the workspace: it must find the data run in MLflow.
    train = train_flow(workspace=ws, experiment=str(tiny_experiment))
    assert train.upstream_run_id == data.run_id
    [member] = train.members
    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(member.run_id)
    assert run.data.tags[Tag.FLOW.value] == Flow.TRAIN.value
    assert run.data.tags[Tag.UPSTREAM_RUN_ID.value] == data.run_id
    assert run.data.tags[Tag.DATASET_HASH.value] == data.dataset_hash
    assert run.data.tags[Tag.PLAN_HASH.value] == train.plan_hash
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENTS[Flow.TRAIN]
    # Artifacts went through the S3 root of the server.
    assert run.info.artifact_uri.startswith("s3://")
    model_uri = run.data.tags[Tag.MODEL_URI.value]  # the member's logged pyfunc model
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", moto_endpoint)  # as any MLflow client needs
    stored = {f.path for f in mlflow.artifacts.list_artifacts(artifact_uri=model_uri)}
    assert {"MLmodel", "artifacts"} <= stored
    assert "val_dice" in run.data.metrics or run.data.metrics, "metrics logged every epoch"
    assert run.data.tags[Tag.SKYPILOT_TASK_ID.value] == "sky-managed-2026-11-26-task-7"

    # A recovered spot job (same SKYPILOT_TASK_ID) continues the same MLflow run and resumes
    # from the checkpoint the first attempt left, instead of starting over.
    again = train_flow(workspace=ws, experiment=str(tiny_experiment))
    [resumed] = again.members
    assert resumed.run_id == member.run_id
    assert resumed.resumed_from_epoch == 1
