"""Tracking faults: bounded MLflow retries, the journal of run ends, missing model artifacts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from minivess.errors import ContractError
from minivess.settings import load_settings
from minivess.tracking import faults


def test_retry_limits_fit_the_budget() -> None:
    for budget in (10, 60, 300):
        lim = faults.retry_limits(budget)
        retries, timeout = int(lim[faults.ENV_MAX_RETRIES]), int(lim[faults.ENV_TIMEOUT])
        worst = (retries + 1) * timeout + sum(2**i for i in range(retries)) + retries
        assert worst <= budget or timeout == 1


def test_http_limits_are_scoped_and_never_override_the_user(monkeypatch) -> None:
    monkeypatch.setenv(faults.ENV_TIMEOUT, "7")
    monkeypatch.delenv(faults.ENV_MAX_RETRIES, raising=False)
    with faults.http_limits(60):
        assert os.environ[faults.ENV_TIMEOUT] == "7"  # the user's value wins
        assert os.environ[faults.ENV_MAX_RETRIES] == "3"
    assert faults.ENV_MAX_RETRIES not in os.environ


def test_a_run_left_running_is_ended_on_the_next_connection(tmp_path: Path, mlflow_db) -> None:
    from minivess.tracking.mlflow_adapter import connect

    settings = load_settings(tmp_path / "ws", environ={})
    mlflow_db(settings)
    client = connect(settings)
    exp = client.create_experiment("x", artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp)
    faults.record_pending(settings.workspace, settings.tracking_uri, run.info.run_id, "FAILED")
    connect(settings)  # replays the journal
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert not (settings.workspace / faults.PENDING_FILE).exists()


def test_a_version_whose_artifacts_are_gone_is_refused_in_one_line(
    tmp_path: Path, mlflow_db
) -> None:
    from minivess.tracking.mlflow_adapter import (
        RegisteredVersion,
        connect,
        download_version,
    )

    settings = load_settings(tmp_path / "ws", environ={})
    mlflow_db(settings)
    client = connect(settings)
    art = tmp_path / "art"
    exp = client.create_experiment("y", artifact_location=str(art))
    run = client.create_run(exp)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"onnx")
    client.log_artifacts(run.info.run_id, str(tmp_path / "model"), "model")
    version = RegisteredVersion("m", "1", f"runs:/{run.info.run_id}/model", run.info.run_id)
    assert (download_version(client, version, tmp_path / "ok") / "model.onnx").is_file()
    shutil.rmtree(art)  # the artifact store lost the files
    with pytest.raises(ContractError) as err:
        download_version(client, version, tmp_path / "gone")
    assert "version 1" in str(err.value) and "missing" in str(err.value)
    assert "\n" not in str(err.value)
