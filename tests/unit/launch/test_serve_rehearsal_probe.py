"""The serve rehearsal's SkyServe-style readiness probe, against a real loopback HTTP server.

The whole rehearsal (replica setup/run, registry, authed requests) runs in
``tests/integration/launch/test_serve_rehearsal.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minivess.launch.rehearse import RehearsalError
from minivess.launch.rehearse_serve import localize_run, wait_ready_as_skyserve


class _Replica:
    """A loopback server whose readiness path answers 503 until ``ready_after`` probes."""

    def __init__(self, ready_after: int, hang_s: float = 0.0) -> None:
        self.ready_after = ready_after
        self.hang_s = hang_s
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.seen.append((self.command, self.path, self.headers.get("X-Probe")))
                if outer.hang_s:
                    time.sleep(outer.hang_s)
                ready = len(outer.seen) > outer.ready_after
                self.send_response(200 if ready else 503)
                self.end_headers()

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def replica() -> Iterator[_Replica]:
    rep = _Replica(ready_after=2)
    yield rep
    rep.close()


def _spec(**kw: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "readiness_path": "/readyz",
        "initial_delay_seconds": 30,
        "readiness_timeout_seconds": 2,
        "probe_interval_seconds": 0.05,
        "post_data": None,
        "readiness_headers": None,
    }
    spec.update(kw)
    return spec


def test_not_ready_within_the_initial_delay_is_tolerated(replica: _Replica) -> None:
    probes, ready = wait_ready_as_skyserve(replica.url, _spec(), lambda: True, time.monotonic())
    assert [p.status for p in probes] == [503, 503, 200]
    assert ready is not None
    assert {path for _, path, _ in replica.seen} == {"/readyz"}


def test_not_ready_past_the_initial_delay_fails_as_skyserve_tears_down() -> None:
    rep = _Replica(ready_after=10**6)
    try:
        spec = _spec(initial_delay_seconds=0.3)
        probes, ready = wait_ready_as_skyserve(rep.url, spec, lambda: True, time.monotonic())
    finally:
        rep.close()
    assert ready is None
    assert len(probes) >= 2 and all(p.status == 503 for p in probes)


def test_a_probe_slower_than_the_timeout_counts_as_not_ready() -> None:
    rep = _Replica(ready_after=0, hang_s=1.0)
    try:
        spec = _spec(readiness_timeout_seconds=0.2, initial_delay_seconds=0.1)
        probes, ready = wait_ready_as_skyserve(rep.url, spec, lambda: True, time.monotonic())
    finally:
        rep.close()
    assert ready is None
    assert probes[0].status == 0 and "Timeout" in probes[0].error


def test_post_data_and_headers_are_sent_as_configured(replica: _Replica) -> None:
    spec = _spec(post_data={"x": 1}, readiness_headers={"X-Probe": "yes"})
    wait_ready_as_skyserve(replica.url, spec, lambda: True, time.monotonic())
    assert {(m, h) for m, _, h in replica.seen} == {("POST", "yes")}


def test_a_dead_replica_ends_the_wait(replica: _Replica) -> None:
    replica.ready_after = 10**6
    probes, ready = wait_ready_as_skyserve(replica.url, _spec(), lambda: False, time.monotonic())
    assert ready is None and len(probes) == 1


def test_localize_run_binds_loopback_on_the_free_port() -> None:
    run = "set -e\nminivess serve --model-uri m --host 0.0.0.0 --port 3000 --auth-token-env T\n"
    out = localize_run(run, 3000, 45123)
    assert "--host 127.0.0.1 --port 45123 --auth-token-env T" in out
    assert "0.0.0.0" not in out
    with pytest.raises(RehearsalError, match="--port 8080"):
        localize_run(run, 8080, 45123)


def test_cli_routes_a_serve_target_to_the_serve_rehearsal() -> None:
    """``--preempt`` means nothing for a SkyServe replica: one line, exit 2, nothing started."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "minivess", "launch", "--target", "serve", "--rehearse"]
    proc = subprocess.run([*cmd, "--preempt", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "serve rehearsal runs one replica" in lines[0], proc.stderr
