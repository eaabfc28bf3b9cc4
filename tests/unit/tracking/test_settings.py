"""Settings: storage YAML + environment -> where tracking, artifacts and checkpoints live."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.settings import load_settings


def test_embedded_default_is_local_sqlite_and_workspace_artifacts(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "ws", environ={})
    assert s.tracking_uri == f"sqlite:///{(tmp_path / 'ws' / 'mlflow.db').resolve()}"
    assert s.artifact_location == (tmp_path / "ws" / "mlartifacts").resolve().as_uri()
    assert s.checkpoint_root == str((tmp_path / "ws" / "checkpoints").resolve())
    assert not s.storage.s3.enabled


def test_environment_switches_to_s3_without_any_hard_coded_bucket(tmp_path: Path) -> None:
    env = {"MINIVESS_S3_BUCKET": "lab-bucket", "MINIVESS_S3_ENDPOINT_URL": "http://127.0.0.1:9"}
    s = load_settings(tmp_path, environ=env)
    assert s.artifact_location == "s3://lab-bucket/mlflow"
    assert s.checkpoint_root == "s3://lab-bucket/checkpoints"
    assert s.storage.s3.endpoint_url == "http://127.0.0.1:9"


def test_tracking_server_from_env_leaves_artifact_root_to_the_server(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    assert s.tracking_uri == "http://127.0.0.1:5000"
    assert s.artifact_location is None


def test_unknown_storage_key_is_named_with_a_hint(tmp_path: Path) -> None:
    bad = tmp_path / "storage.yaml"
    bad.write_text("s3:\n  buckett: x\n")
    with pytest.raises(ConfigError, match=r"s3\.buckett.*Did you mean 'bucket'"):
        load_settings(tmp_path, storage_file=bad, environ={})


def test_settings_construction_does_no_io(tmp_path: Path) -> None:
    load_settings(tmp_path / "never-created", environ={})
    assert not (tmp_path / "never-created").exists()
