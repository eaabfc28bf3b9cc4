"""The ASGI guard, driven with real ASGI messages around a small echo app."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from minivess.serving.guard import MAX_FILENAME_BYTES, OTHER_ROUTE, RequestGuard

BOUNDARY = b"b0undary"
MULTIPART = (b"content-type", b"multipart/form-data; boundary=" + BOUNDARY)


def part(name: str, payload: bytes, filename: str | None = "scan.nii.gz") -> bytes:
    disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return (
        b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n"
        b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n"
    )


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


GOOD = body(part("volume", b"abc"))


async def echo_app(scope, receive, send) -> None:
    """Reads the whole body and answers 200 with its length (what a real route does)."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")  # what starlette does on disconnect
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    payload = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": payload})


def call(guard, path="/segment", headers=(MULTIPART,), chunks=(GOOD,), method="POST", reads=None):
    """Drive ``guard`` with one request; ``reads`` (if given) collects every receive() result."""
    sent: list[dict] = []
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive():
        message = queue.pop(0) if queue else {"type": "http.disconnect"}
        if reads is not None:
            reads.append(message)
        return message

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "path": path,
        "method": method,
        "headers": [(k.lower(), v) for k, v in headers],
    }

    async def run():
        with contextlib.suppress(ConnectionError):  # the app gives up after a cut-off body
            await guard(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(raw) if raw[:1] == b"{" else raw


def test_open_without_token() -> None:
    assert call(RequestGuard(echo_app, 1000))[0:3:2] == (200, {"size": len(GOOD)})


def test_bearer_token_required_on_inference_routes_only() -> None:
    guard = RequestGuard(echo_app, 1000, token="s3cret")
    status, headers, out = call(guard)
    assert (status, out["error"]) == (401, "unauthorized")
    assert headers[b"www-authenticate"] == b"Bearer"
    auth = [MULTIPART]
    assert call(guard, headers=[*auth, (b"Authorization", b"Bearer wrong")])[0] == 401
    assert call(guard, headers=[*auth, (b"Authorization", b"Basic s3cret")])[0] == 401
    assert call(guard, headers=[*auth, (b"Authorization", b"Bearer s3cret")])[0] == 200
    assert call(guard, path="/readyz", headers=())[0] == 200  # probes stay open
    assert call(guard, path="/metrics", headers=())[0] == 200


def test_declared_length_over_limit_is_413_before_reading() -> None:
    guard = RequestGuard(echo_app, 100)
    length = (b"content-length", b"101")
    reads: list = []
    status, _, out = call(guard, headers=[MULTIPART, length], chunks=(b"x" * 101,), reads=reads)
    assert (status, out["error"]) == (413, "too_large")
    assert "101 bytes" in out["detail"]
    assert reads == []  # refused on the header alone: not one byte of the body was read


def test_a_token_with_anything_appended_or_cut_is_refused() -> None:
    guard = RequestGuard(echo_app, 1000, token="s3cret")
    for given in (b"Bearer s3cretX", b"Bearer s3cre", b"Bearer s3cret s3cret", b"Bearer "):
        assert call(guard, headers=[MULTIPART, (b"Authorization", given)])[0] == 401
    assert call(guard, headers=[MULTIPART, (b"Authorization", b"Bearer s3cret")])[0] == 200


def test_streamed_body_is_cut_off_at_the_limit() -> None:
    guard = RequestGuard(echo_app, 300)
    big = body(part("volume", b"x" * 400))
    status, _, out = call(guard, chunks=(big[:150], big[150:300], big[300:]))
    assert (status, out["error"]) == (413, "too_large")
    assert call(guard, chunks=(GOOD[:40], GOOD[40:]))[2] == {"size": len(GOOD)}


@pytest.mark.parametrize(
    ("payload", "headers", "status", "code"),
    [
        (body(part("image", b"abc")), (MULTIPART,), 400, "unknown_field"),
        (body(part("volume", b"http://example.com/a.nii.gz", None)), (MULTIPART,), 400,
         "not_a_file"),
        (body(part("volume", b"abc", "a" * (MAX_FILENAME_BYTES + 1))), (MULTIPART,), 400,
         "filename_too_long"),
        (body(part("volume", b"a"), part("volume", b"b")), (MULTIPART,), 400, "too_many_files"),
        (b"--" + BOUNDARY + b"\r\ngarbage", (MULTIPART,), 400, "malformed_multipart"),
        (body(), (MULTIPART,), 400, "missing_volume"),
        (GOOD, ((b"content-type", b"application/json"),), 415, "not_multipart"),
        (b"http://example.com/x.nii.gz", (), 415, "not_multipart"),
        (GOOD, ((b"content-type", b"multipart/form-data"),), 415, "not_multipart"),
    ],
)  # fmt: skip
def test_client_mistakes_are_4xx_with_a_reason(payload, headers, status, code) -> None:
    got, _, out = call(RequestGuard(echo_app, 10_000), headers=headers, chunks=(payload,))
    assert (got, out["error"]) == (status, code)
    assert len(out["detail"]) > 20


def test_bad_part_is_refused_mid_stream_before_the_rest_is_read() -> None:
    seen: list[int] = []

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(len(message.get("body", b"")))
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                raise ConnectionError("gave up")

    bad = body(part("image", b"x" * 1000))
    status, _, out = call(RequestGuard(app, 10_000), chunks=(bad[:200], bad[200:]))
    assert (status, out["error"]) == (400, "unknown_field")
    assert seen == [0]  # the app never got a byte of the bad part


def test_get_is_405() -> None:
    status, headers, out = call(RequestGuard(echo_app, 1000), method="GET")
    assert (status, out["error"], headers[b"allow"]) == (405, "method_not_allowed", b"POST")


def test_overload_is_503_with_retry_after() -> None:
    guard = RequestGuard(echo_app, 1000, max_concurrency=2)
    guard.in_flight = 2  # two requests already running
    status, headers, out = call(guard)
    assert (status, out["error"], headers[b"retry-after"]) == (503, "overloaded", b"5")
    guard.in_flight = 1
    assert call(guard)[0] == 200


def test_metrics_served_by_the_guard_can_need_the_token() -> None:
    guard = RequestGuard(echo_app, 1000, token="t", metrics_text=lambda: b"m 1\n")
    assert call(guard, path="/metrics", headers=())[2] == b"m 1\n"
    locked = RequestGuard(
        echo_app, 1000, token="t", metrics_text=lambda: b"m 1\n", metrics_token=True
    )
    assert call(locked, path="/metrics", headers=())[0] == 401
    assert call(locked, path="/metrics", headers=[(b"authorization", b"Bearer t")])[0] == 200


def test_unknown_paths_fold_into_one_label() -> None:
    import prometheus_client as prom

    guard = RequestGuard(echo_app, 1000, record=True)
    for i in range(20):
        call(guard, path=f"/random-{i}", headers=())
    call(guard)
    routes = {
        s.labels["route"]
        for metric in prom.REGISTRY.collect()
        if metric.name == "minivess_http_requests"
        for s in metric.samples
    }
    assert OTHER_ROUTE in routes and "/segment" in routes
    assert not any(r.startswith("/random") for r in routes)


def test_two_recording_guards_in_one_process_share_the_collectors() -> None:
    """A second guard (another app in the worker, a rerun) must not re-register the metrics."""
    import prometheus_client as prom

    def requests_seen() -> float:
        return sum(
            s.value
            for m in prom.REGISTRY.collect()
            if m.name == "minivess_http_requests"
            for s in m.samples
            if s.name.endswith("_total")
        )

    before = requests_seen()
    for _ in range(2):
        call(RequestGuard(echo_app, 1000, record=True))
    assert requests_seen() == before + 2
