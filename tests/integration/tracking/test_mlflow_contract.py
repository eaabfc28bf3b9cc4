"""The MLflow contract against a real `mlflow server` whose artifacts live on a moto S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest

from minivess.errors import ContractError
from minivess.settings import load_settings
from minivess.tracking import mlflow_adapter as mfa
from minivess.tracking.contract import Flow, Tag
from minivess.tracking.storage import StorageUnavailableError, check_bucket

pytestmark = pytest.mark.slow


@pytest.fixture
def client(mlflow_server: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Clients upload artifacts straight to the server's S3 root, so they need its endpoint."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MINIVESS_S3_ENDPOINT_URL", moto_endpoint)
    settings = load_settings(tmp_path / "ws")
    return settings, mfa.connect(settings)


def test_consumer_finds_producer_by_tag_and_fails_loudly_when_missing(client) -> None:
    import mlflow

    settings, c = client
    with pytest.raises(ContractError, match=r"no finished 'data' run.*dataset_hash"):
        mfa.find_upstream(c, Flow.DATA, tags={Tag.DATASET_HASH.value: "absent"})
    with mfa.flow_run(c, settings, Flow.DATA, tags={Tag.DATASET_HASH: "h-123"}) as run:
        mlflow.log_text("{}", "profile/dataset_profile.json")
    found = mfa.find_upstream(c, Flow.DATA, tags={Tag.DATASET_HASH.value: "h-123"})
    assert found.info.run_id == run.info.run_id
    assert found.data.tags[Tag.FLOW.value] == "data"
    with mfa.session(c):  # the fluent API reaches the client's server and S3 only inside it
        text = mlflow.artifacts.load_text(f"runs:/{found.info.run_id}/profile/dataset_profile.json")
    assert text == "{}"


def test_a_failed_run_is_never_an_upstream(client) -> None:
    settings, c = client
    with (
        pytest.raises(RuntimeError),
        mfa.flow_run(c, settings, Flow.DATA, tags={Tag.DATASET_HASH: "h-fail"}),
    ):
        raise RuntimeError("profiling crashed")
    with pytest.raises(ContractError):
        mfa.find_upstream(c, Flow.DATA, tags={Tag.DATASET_HASH.value: "h-fail"})


def test_half_written_model_is_never_registered(client, tmp_path: Path) -> None:
    import mlflow

    settings, c = client
    with mfa.flow_run(c, settings, Flow.ANALYSIS) as run:
        mlflow.log_text("plan", "champion/plan.json")  # best.pt never arrives
    with pytest.raises(ContractError, match=r"best\.pt'] missing"):
        mfa.register_model(
            c, f"runs:/{run.info.run_id}/champion", run_id=run.info.run_id,
            expected_files=["best.pt", "plan.json"], name="mv-half-written",
        )  # fmt: skip
    assert c.search_model_versions("name = 'mv-half-written'") == []

    with mfa.flow_run(c, settings, Flow.ANALYSIS) as run:
        mlflow.log_text("weights", "champion/best.pt")
    v = mfa.register_model(
        c, f"runs:/{run.info.run_id}/champion", run_id=run.info.run_id,
        expected_files=["best.pt"], name="mv-complete", metrics={"dice": 0.8},
    )  # fmt: skip
    latest = mfa.latest_version(c, "mv-complete")
    assert latest.version == v.version
    local = mfa.download_version(c, latest, tmp_path / "dl")
    assert (local / "best.pt").read_text() == "weights"
    mfa.mark_deployed(c, latest, {"bento": "minivess:abc"})
    tags = c.get_model_version("mv-complete", v.version).tags
    assert tags[Tag.STATUS.value] == mfa.STATUS_DEPLOYED
    assert "endpoint" not in tags  # the smoke-test server is stopped: no tag names it


def test_tracking_server_down_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    from tests.fixtures.ports import closed_port

    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        settings = load_settings(tmp_path, environ={"MLFLOW_TRACKING_URI": url})
        with pytest.raises(mfa.TrackingUnavailableError, match=f"{url} is not answering"):
            mfa.connect(settings)


def test_s3_endpoint_down_is_bounded_and_names_the_endpoint(tmp_path: Path) -> None:
    from tests.fixtures.ports import closed_port
    from tests.integration.conftest import FAKE_AWS

    with closed_port() as port, pytest.MonkeyPatch.context() as mp:
        endpoint = f"http://127.0.0.1:{port}"
        environ = {"MINIVESS_S3_BUCKET": "mv-data", "MINIVESS_S3_ENDPOINT_URL": endpoint}
        settings = load_settings(tmp_path, environ=environ)
        for k, v in FAKE_AWS.items():
            mp.setenv(k, v)
        with pytest.raises(StorageUnavailableError, match=f"{endpoint} unreachable after 3"):
            check_bucket(settings.storage.s3)
