"""ASGI guard in front of the inference routes: bearer-token auth and an upload size limit.

It runs before the request body is read, so an unauthenticated or oversized upload costs the
service nothing: a ``Content-Length`` over the limit is refused at once, and a body streamed
without one is cut off as soon as it passes the limit. Health (``/readyz``, ``/livez``) and
``/metrics`` stay open so load balancers and Prometheus can probe a protected service.
Pure ASGI, no BentoML import: unit tests drive it with plain coroutines.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Routes the guard protects (the service's inference APIs).
PROTECTED_ROUTES = ("/segment", "/summary")


def _json_response(status: int, code: str, detail: str, extra: list[tuple[bytes, bytes]]):
    body = json.dumps({"error": code, "detail": detail, "status": status}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    )


class RequestGuard:
    """ASGI middleware: 401 without the bearer token, 413 over ``max_upload_bytes``.

    Args:
        app: the wrapped ASGI app.
        max_upload_bytes: largest request body accepted on the protected routes.
        token: the expected bearer token; ``None`` disables auth.
        routes: paths the guard applies to.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_upload_bytes: int,
        token: str | None = None,
        routes: Iterable[str] = PROTECTED_ROUTES,
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.token = token.encode() if token else None
        self.routes = frozenset(routes)

    async def _reject(self, send: Send, status: int, code: str, detail: str, extra=()) -> None:
        start, body = _json_response(status, code, detail, list(extra))
        await send(start)
        await send(body)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self.token is None:
            return True
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or scope.get("path") not in self.routes:
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if not self._authorized(headers):
            await self._reject(
                send,
                401,
                "unauthorized",
                "missing or wrong bearer token; send 'Authorization: Bearer <token>'",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        limit = self.max_upload_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._reject(send, 413, "too_large", self._too_large(int(declared)))
            return
        await self._call_with_limit(scope, receive, send)

    def _too_large(self, size: int) -> str:
        return (
            f"the request body is {size} bytes, over the limit of {self.max_upload_bytes}; send a "
            "smaller (e.g. gzip-compressed or cropped) volume or raise max_upload_bytes"
        )

    async def _call_with_limit(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = {"seen": 0, "rejected": False, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message.get("type") == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.max_upload_bytes and not state["rejected"]:
                    state["rejected"] = True
                    if not state["started"]:
                        await self._reject(send, 413, "too_large", self._too_large(state["seen"]))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["rejected"]:
                return  # the 413 is already out; drop what the app says after the disconnect
            if message.get("type") == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)
