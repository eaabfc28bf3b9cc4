"""`minivess stack up`: a real mlflow server process, health-checked, with optional basic auth."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from minivess.errors import ConfigError, MinivessError
from minivess.settings import load_settings
from minivess.tracking.stack import StackOptions, server_command, stack_down, stack_status, stack_up

pytestmark = pytest.mark.slow


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_stack_up_with_basic_auth_then_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "s3cret-for-test-only")
    import mlflow

    settings = load_settings(tmp_path / "ws", environ={})
    # What the flows wrote to the workspace's own store before any server existed.
    mlflow.MlflowClient(settings.workspace_store_uri).create_experiment("written-by-the-flows")
    info = stack_up(StackOptions(auth=True), settings)
    try:
        api = f"{info.url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(api) == 401
        assert _get(api, ("admin", "s3cret-for-test-only")) == 200
        by_name = f"{info.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name="
        assert _get(by_name + "written-by-the-flows", ("admin", "s3cret-for-test-only")) == 200
        assert _get(by_name + "never-written", ("admin", "s3cret-for-test-only")) == 404
        assert stack_status(settings) == info
        with pytest.raises(MinivessError, match="already runs"):
            stack_up(StackOptions(), settings)
        assert "s3cret" not in (tmp_path / "ws" / "stack" / "basic_auth.ini").read_text()
    finally:
        assert stack_down(settings) == info
    assert stack_status(settings) is None


def test_bad_stack_options_fail_before_starting_anything(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    with pytest.raises(ConfigError, match="MINIVESS_MLFLOW_BACKEND_URI"):
        server_command(StackOptions(backend="postgresql"), settings, 5000, environ={})
    with pytest.raises(ConfigError, match=r"s3\.bucket"):
        server_command(StackOptions(artifacts="s3"), settings, 5000, environ={})
    cmd = server_command(
        StackOptions(backend="postgresql", artifacts="proxied"), settings, 5000,
        environ={"MINIVESS_MLFLOW_BACKEND_URI": "postgresql://u:p@db/mlflow"},
    )  # fmt: skip
    assert cmd[cmd.index("--backend-store-uri") + 1] == "postgresql://u:p@db/mlflow"
    assert "--serve-artifacts" in cmd
