"""Real local stand-ins for cloud services: a moto S3 server and an `mlflow server` on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from minivess.serving.server import free_port
from tests.fixtures.mlflow_db import copy_store

#: The xdist group of every test that uses a session server that is dear to start: the Prefect
#: test harness (tests/integration/flows, ~40 CPU-s) and the ``mlflow server`` below (~10 CPU-s).
#: Their tests share one worker (``--dist loadgroup``), so each server starts once per session,
#: not once per worker.
SERVERS_GROUP = "session-servers"
SHARED_SERVERS = ("prefect_harness", "mlflow_server")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SHARED_SERVERS):
            item.add_marker(pytest.mark.xdist_group(SERVERS_GROUP))


FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto S3 server on 127.0.0.1 (ThreadedMotoServer), with fake credentials.

    The credentials are set for the session through a ``MonkeyPatch`` context (the session-scoped
    form of ``monkeypatch``), which restores the environment exactly when the session ends.
    """
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for k, v in FAKE_AWS.items():
            mp.setenv(k, v)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(moto_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the moto server, named after the test."""
    import boto3

    name = "mv-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=name)
    return name


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


@pytest.fixture(scope="session")
def mlflow_server(
    moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path
) -> Iterator[str]:
    """A real ``mlflow server`` subprocess: SQLite backend, artifacts on the moto S3 server."""
    import boto3

    bucket = "mv-mlflow-artifacts"
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket=bucket)
    root = tmp_path_factory.mktemp("mlflow-server")
    store = copy_store(mlflow_template, root / "mlflow.db")
    port = free_port()
    # No job-execution workers (seven huey consumers; minivess runs no MLflow jobs).
    env = {**os.environ, **FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": moto_endpoint,
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", store,
            "--default-artifact-root", f"s3://{bucket}/mlflow",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("w"),
        start_new_session=True,  # its uvicorn worker is stopped with it, never orphaned
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health", timeout=90)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "ws"
