"""The ASGI guard, driven with real ASGI messages around a small echo app."""

from __future__ import annotations

import asyncio
import contextlib
import json

from minivess.serving.guard import RequestGuard


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
    body = json.dumps({"size": size}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(
    guard, path="/segment", headers=(), chunks=(b"abc",), reads: list | None = None
) -> tuple[int, dict, dict]:
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

    scope = {"type": "http", "path": path, "headers": [(k.lower(), v) for k, v in headers]}

    async def run():
        with contextlib.suppress(ConnectionError):  # the app gives up after a cut-off body
            await guard(scope, receive, send)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body)


def test_open_without_token() -> None:
    assert call(RequestGuard(echo_app, 100))[0:3:2] == (200, {"size": 3})


def test_bearer_token_required_on_inference_routes_only() -> None:
    guard = RequestGuard(echo_app, 100, token="s3cret")
    status, headers, body = call(guard)
    assert (status, body["error"]) == (401, "unauthorized")
    assert headers[b"www-authenticate"] == b"Bearer"
    assert call(guard, headers=[(b"Authorization", b"Bearer wrong")])[0] == 401
    assert call(guard, headers=[(b"Authorization", b"Basic s3cret")])[0] == 401
    assert call(guard, headers=[(b"Authorization", b"Bearer s3cret")])[0] == 200
    assert call(guard, path="/readyz")[0] == 200  # probes stay open
    assert call(guard, path="/metrics")[0] == 200


def test_a_token_with_anything_appended_or_cut_is_refused() -> None:
    guard = RequestGuard(echo_app, 100, token="s3cret")
    for given in (b"Bearer s3cretjunk", b"Bearer s3cre", b"Bearer  s3cret x", b"Bearers3cret"):
        assert call(guard, headers=[(b"Authorization", given)])[0] == 401, given
    assert call(guard, headers=[(b"Authorization", b"bearer s3cret")])[0] == 200  # RFC 7235


def test_declared_length_over_limit_is_413_before_reading() -> None:
    guard = RequestGuard(echo_app, 100)
    reads: list = []
    status, _, body = call(
        guard, headers=[(b"content-length", b"101")], chunks=(b"x" * 101,), reads=reads
    )
    assert (status, body["error"]) == (413, "too_large")
    assert "101 bytes" in body["detail"]
    assert reads == []  # refused on the header alone: not one byte of the body was read


def test_streamed_body_is_cut_off_at_the_limit() -> None:
    guard = RequestGuard(echo_app, 100)
    status, _, body = call(guard, chunks=(b"x" * 60, b"x" * 60, b"x" * 60))
    assert (status, body["error"]) == (413, "too_large")
    assert call(guard, chunks=(b"x" * 50, b"x" * 50))[2] == {"size": 100}
