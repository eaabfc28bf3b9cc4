"""``minivess stack up``: a local ``mlflow server`` process for a lab or a laptop.

Backends: the workspace's own SQLite store (default: the ``mlflow.db`` the flows write when no
server is configured, so its runs and registry are served) or PostgreSQL (URI from the
environment, never a file in the repo). Artifacts: the workspace's, an S3 root
(``configs/storage.yaml``), or proxied through the server (``--serve-artifacts``). Optional
basic auth: MLflow's ``basic-auth`` app with the admin password from
``MLFLOW_AUTH_ADMIN_PASSWORD``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from minivess.errors import ConfigError, MinivessError
from minivess.settings import Settings, process_environ
from minivess.tracking.mlflow_adapter import TrackingUnavailableError, check_tracking_server
from minivess.tracking.storage import mlflow_s3_env

_logger = logging.getLogger(__name__)

#: Environment variable with the PostgreSQL backend URI (it holds a password: never a file).
ENV_BACKEND_URI = "MINIVESS_MLFLOW_BACKEND_URI"
#: Environment variable MLflow's basic-auth app reads the admin password from.
ENV_AUTH_PASSWORD = "MLFLOW_AUTH_ADMIN_PASSWORD"
#: MLflow's switch for its job-execution workers (GenAI jobs; minivess runs none): off unless the
#: environment turns it on, so a laptop server is one process and its worker.
ENV_JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
#: Seconds to wait for the server's /health after start.
START_TIMEOUT_S = 90


@dataclass(frozen=True)
class StackOptions:
    """How to run the tracking server."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    artifacts: Literal["local", "s3", "proxied"] = "local"
    auth: bool = False


@dataclass(frozen=True)
class StackInfo:
    """A running server: where it answers and how to stop it."""

    url: str
    pid: int
    log: str
    auth: bool
    #: The process's start time (psutil ``create_time``): a reused pid has another one.
    create_time: float = 0.0


def _same_process(info: StackInfo) -> bool:
    """True when ``info.pid`` is still the server minivess started (not a reused pid)."""
    import psutil

    try:
        proc = psutil.Process(info.pid)
        started = proc.create_time()
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    if info.create_time and abs(started - info.create_time) > 0.5:
        return False
    return "mlflow" in cmdline


def _state_dir(settings: Settings) -> Path:
    return settings.workspace / "stack"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(
    opts: StackOptions, settings: Settings, port: int, environ: dict[str, str]
) -> list[str]:
    """The ``mlflow server`` command line for these options (pure; raises on bad combos)."""
    if opts.backend == "postgresql":
        backend = environ.get(ENV_BACKEND_URI)
        if not backend or not backend.startswith("postgresql"):
            raise ConfigError(
                f"--backend postgresql needs {ENV_BACKEND_URI}=postgresql://user:pass@host/db "
                "in the environment."
            )
    else:
        backend = settings.workspace_store_uri
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend]
    cmd += ["--host", opts.host, "--port", str(port), "--workers", "1"]
    s3 = settings.storage.s3
    if opts.artifacts == "s3":
        if not s3.enabled:
            raise ConfigError(
                "--artifacts s3 needs s3.bucket (configs/storage.yaml or MINIVESS_S3_BUCKET)."
            )
        cmd += ["--default-artifact-root", s3.uri(s3.mlflow_prefix)]
    elif opts.artifacts == "proxied":
        dest = s3.uri(s3.mlflow_prefix) if s3.enabled else settings.workspace_artifact_uri
        cmd += ["--serve-artifacts", "--artifacts-destination", dest]
    else:
        cmd += ["--default-artifact-root", settings.workspace_artifact_uri]
    if opts.auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def _auth_env(settings: Settings, environ: dict[str, str]) -> dict[str, str]:
    """Point MLflow's auth app at a config in the workspace; the password stays in the env."""
    if not environ.get(ENV_AUTH_PASSWORD):
        raise ConfigError(
            f"--auth needs {ENV_AUTH_PASSWORD} set in the environment (admin password)."
        )
    state = _state_dir(settings)
    ini = state / "basic_auth.ini"
    user = environ.get("MLFLOW_TRACKING_USERNAME", "admin")
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{(state / 'basic_auth.db').resolve()}\n"
        f"admin_username = {user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    # CSRF key of the auth app: the environment's, else a fresh random one for this process.
    key = environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32)
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": key}


def stack_up(opts: StackOptions, settings: Settings) -> StackInfo:
    """Start the server in the background, wait for ``/health`` and record its pid.

    Raises:
        MinivessError: a server is already running for this workspace, or it failed to start.
    """
    state = _state_dir(settings)
    state.mkdir(parents=True, exist_ok=True)
    running = stack_status(settings)
    if running is not None:
        raise MinivessError(f"a tracking server already runs at {running.url} (pid {running.pid}); "
                            "`minivess stack down` first.")  # fmt: skip
    environ = process_environ()
    port = opts.port or _free_port(opts.host)
    cmd = server_command(opts, settings, port, environ)
    env = {ENV_JOB_EXECUTION: "false", **environ, **mlflow_s3_env(settings.storage.s3)}
    if opts.auth:
        env.update(_auth_env(settings, environ))
    log = state / "mlflow-server.log"
    proc = subprocess.Popen(
        cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://{opts.host}:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            tail = log.read_text()[-800:]
            raise MinivessError(f"mlflow server exited with {proc.returncode}; log {log}: {tail}")
        try:
            check_tracking_server(url, attempts=1)
            break
        except TrackingUnavailableError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise MinivessError(f"mlflow server did not answer at {url}; see {log}") from None
            time.sleep(0.5)
    import psutil

    info = StackInfo(
        url=url, pid=proc.pid, log=str(log), auth=opts.auth,
        create_time=psutil.Process(proc.pid).create_time(),
    )  # fmt: skip
    (state / "stack.json").write_text(json.dumps(asdict(info)))
    return info


def stack_status(settings: Settings) -> StackInfo | None:
    """The server recorded for this workspace if its process is alive, else None."""
    record = _state_dir(settings) / "stack.json"
    if not record.is_file():
        return None
    info = StackInfo(**json.loads(record.read_text()))
    if not _same_process(info):  # gone, or its pid now belongs to another process
        _logger.warning("stack: pid %d is no longer the tracking server; forgetting it", info.pid)
        record.unlink()
        return None
    return info


def stack_down(settings: Settings) -> StackInfo | None:
    """Stop the recorded server (SIGTERM, then SIGKILL after 15 s); returns what was stopped."""
    info = stack_status(settings)
    if info is None:
        return None
    os.killpg(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if os.waitpid(info.pid, os.WNOHANG)[0]:  # our own child: reap it
                break
        except ChildProcessError:
            pass
        try:
            os.kill(info.pid, 0)
        except OSError:
            break
        time.sleep(0.2)
    else:
        os.killpg(info.pid, signal.SIGKILL)
    (_state_dir(settings) / "stack.json").unlink(missing_ok=True)
    return info
