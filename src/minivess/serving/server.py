"""Run the service as a real ``bentoml serve`` subprocess on a loopback port.

Used by :func:`minivess.serving.deploy.deploy_model` (smoke test), ``minivess serve``, the
integration tests and the benchmark, so all of them exercise the same process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from minivess.errors import MinivessError
from minivess.serving.settings import ServeSettings
from minivess.settings import process_environ

log = logging.getLogger(__name__)

#: ``bentoml serve`` target of the service module.
SERVICE_TARGET = "minivess.serving.service:MinivessSegmenter"
LOOPBACK = "127.0.0.1"


class ServeError(MinivessError):
    """The service did not start or stopped unexpectedly."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    """A running ``bentoml serve`` process; ``url`` is ``http://host:port``."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, n: int = 30) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group (it started it), then SIGKILL after ``timeout``."""
        if not self.alive():
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def _wait_ready(server: LocalServer, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServeError(
                f"bentoml serve exited with code {server.process.returncode} before it was "
                f"ready; its log ({server.log_path}) ends with:\n{server.log_tail()}"
            )
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise ServeError(
        f"the service was not ready on {server.url} after {timeout:.0f} s; its log "
        f"({server.log_path}) ends with:\n{server.log_tail()}"
    )


def start_server(
    settings: ServeSettings,
    workdir: Path,
    *,
    port: int | None = None,
    host: str = LOOPBACK,
    target: str = SERVICE_TARGET,
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = 120.0,
) -> LocalServer:
    """Start ``bentoml serve target`` with ``settings`` in its env and wait for ``/readyz``.

    Args:
        settings: passed to the service through ``MINIVESS_SERVE_*`` variables; without a
            ``model_path`` the service serves its model from BentoML's store.
        workdir: the process's working directory; its log goes to ``workdir/serve.log``.
        port: TCP port; default a free one.
        host: bind address; loopback unless you mean to expose it.
        target: ``module:Service`` or a bento tag.
        extra_env: more variables (e.g. the auth token under the name in ``auth_token_env``).

    Raises:
        ServeError: the process exited or was not ready in time (with the log's tail).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    env = {**process_environ(), **settings.to_env(), **(extra_env or {})}
    env.setdefault("OMP_NUM_THREADS", str(settings.num_threads or os.cpu_count() or 1))
    log_path = workdir / "serve.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]
    log.info("starting %s on http://%s:%d (log: %s)", target, host, port, log_path)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            cmd,
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() ends its workers too
        )
    server = LocalServer(f"http://{host}:{port}", port, process, log_path, env)
    _wait_ready(server, ready_timeout)
    log.info("service ready on %s", server.url)
    return server


@contextmanager
def running_server(settings: ServeSettings, workdir: Path, **kwargs) -> Iterator[LocalServer]:
    """:func:`start_server` as a context manager that always stops the process."""
    server = start_server(settings, workdir, **kwargs)
    try:
        yield server
    finally:
        server.stop()
