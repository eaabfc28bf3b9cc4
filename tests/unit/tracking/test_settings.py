"""Settings: storage YAML + environment -> where tracking, artifacts and checkpoints live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minivess.errors import ConfigError
from minivess.settings import (
    DistEnv,
    cache_root,
    checkpoint_dir,
    checkpoint_key,
    dist_env,
    load_settings,
    scoped_environ,
)


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


def test_a_users_sqlite_tracking_uri_keeps_artifacts_next_to_the_database(tmp_path: Path) -> None:
    db = tmp_path / "lab" / "runs.db"
    s = load_settings(tmp_path / "ws", environ={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert s.tracking_uri == f"sqlite:///{db}"
    # Never None (MLflow would then pick <cwd>/mlruns): the folder next to the database.
    assert s.artifact_location == (db.parent / "mlartifacts").resolve().as_uri()


def test_cache_root_has_one_rule(tmp_path: Path) -> None:
    assert cache_root({"MINIVESS_CACHE_DIR": str(tmp_path / "c")}) == tmp_path / "c"
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "x")}
    assert cache_root(xdg) == tmp_path / "x" / "minivess"
    assert cache_root({}) == Path.home() / ".cache" / "minivess"
    both = {"MINIVESS_CACHE_DIR": str(tmp_path / "c"), **xdg}
    assert load_settings(tmp_path, environ=both).cache_root == tmp_path / "c"


def test_process_facts_are_read_once_into_the_settings(tmp_path: Path) -> None:
    env = {"SKYPILOT_TASK_ID": "sky-2026-abc", "RANK": "1", "WORLD_SIZE": "2"}
    s = load_settings(tmp_path, environ=env)
    assert (s.task_id, s.rank) == ("sky-2026-abc", 1)
    assert s.checkpoint_key("plan123") == "sky-2026-abc"
    assert load_settings(tmp_path, environ={}).checkpoint_key("plan123") == "plan123"
    assert dist_env(env) == DistEnv(rank=1, world_size=2, local_rank=0)
    assert dist_env({}) == DistEnv()


def test_checkpoint_key_is_shared_by_the_train_flow_and_the_rendered_task() -> None:
    assert checkpoint_key("abc", None) == "abc"
    assert checkpoint_key("abc", "${SKYPILOT_TASK_ID}") == "${SKYPILOT_TASK_ID}"
    assert checkpoint_dir("s3://b/checkpoints/", "exp", "k") == "s3://b/checkpoints/exp/k"


def test_scoped_environ_restores_everything_even_what_the_block_wrote() -> None:
    before = dict(os.environ)
    with scoped_environ({"MINIVESS_TEST_SCOPED": "1"}):
        assert os.environ["MINIVESS_TEST_SCOPED"] == "1"
        os.environ["MINIVESS_TEST_WRITTEN_INSIDE"] = "x"  # as mlflow.set_tracking_uri does
    assert dict(os.environ) == before


def test_connect_and_a_flow_run_leave_the_environment_and_mlflow_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_db
) -> None:
    import mlflow
    from mlflow.tracking._tracking_service import utils

    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.contract import Flow

    monkeypatch.chdir(tmp_path)
    before, uri_before = dict(os.environ), utils._tracking_uri
    s = load_settings(tmp_path / "ws", environ={"MINIVESS_S3_ENDPOINT_URL": "http://127.0.0.1:9"})
    mlflow_db(s)
    client = mfa.connect(s)
    assert dict(os.environ) == before
    with mfa.flow_run(client, s, Flow.DATA, run_name="scoped") as run:
        assert mlflow.get_tracking_uri() == s.tracking_uri
        assert os.environ["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9"
        mfa.log_text("hello", "notes/hello.txt")
    assert dict(os.environ) == before
    assert utils._tracking_uri == uri_before
    assert mfa.load_text(client, run.info.run_id, "notes/hello.txt") == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]  # nothing in the cwd
    stored = tmp_path / "ws" / "mlartifacts"
    assert any(stored.rglob("hello.txt"))


def test_a_flow_run_logs_its_params_and_metrics_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_db
) -> None:
    """The data and deploy flows open their runs with ``params=``/``metrics=``: both land."""
    from minivess.tracking import mlflow_adapter as mfa
    from minivess.tracking.contract import Flow

    monkeypatch.chdir(tmp_path)
    s = load_settings(tmp_path / "ws", environ={})
    mlflow_db(s)
    client = mfa.connect(s)
    with (
        pytest.raises(RuntimeError, match="body failed"),
        mfa.flow_run(
            client, s, Flow.DATA, run_name="p", params={"data_dir": "/d"}, metrics={"n": 3}
        ) as run,
    ):
        raise RuntimeError("body failed")
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"data_dir": "/d"}
    assert got.data.metrics == {"n": 3.0}
    assert got.info.status == "FAILED"
