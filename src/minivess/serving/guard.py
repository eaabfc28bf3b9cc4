"""ASGI guard in front of the whole service: auth, upload shape and size, overload, metrics.

It runs before BentoML reads the request body, so a refused request costs the service nothing
and every client mistake is a 4xx with a JSON body ``{"error": code, "detail": message,
"status": N}``:

* the inference routes (``/segment``, ``/summary``) need the bearer token (401), ``POST`` (405)
  and a ``multipart/form-data`` body (415) whose only part is the uploaded FILE in the field
  ``volume`` (400 otherwise: a wrong field name, a string such as a URL -- the server never
  fetches URLs for clients --, a malformed body, a file name over :data:`MAX_FILENAME_BYTES`).
  The multipart body is parsed as it streams in, next to BentoML's own parser; a problem found
  mid-body answers at once and the rest is never read;
* a ``Content-Length`` over ``max_upload_bytes`` is refused at once, a body streamed without one
  is cut off as soon as it passes the limit (413);
* more than ``max_concurrency`` inference requests in flight: 503 with ``Retry-After``
  (overload, not the client's fault; SkyServe adds replicas);
* ``/metrics`` is served here (BentoML's own request metrics are switched off in the service):
  our collectors plus ``minivess_http_requests_total`` and ``minivess_http_request_seconds``
  labelled by route, where every path that is not a known route folds into ``other``, so
  random URLs cannot grow the exposition. ``metrics_token`` makes ``/metrics`` need the token.

Health (``/readyz``, ``/livez``) stays open so load balancers can probe a protected service.
Pure ASGI, no BentoML import: unit tests drive it with plain coroutines.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Routes the guard protects (the service's inference APIs).
PROTECTED_ROUTES = ("/segment", "/summary")
#: Routes with their own metrics label; every other path is labelled :data:`OTHER_ROUTE`.
KNOWN_ROUTES = (*PROTECTED_ROUTES, "/readyz", "/livez", "/metrics", "/")
OTHER_ROUTE = "other"
#: The multipart field that carries the uploaded volume.
UPLOAD_FIELD = "volume"
#: Longest accepted upload file name, bytes (BentoML writes the upload under that name).
MAX_FILENAME_BYTES = 200
#: Seconds a client should wait before retrying an overloaded replica.
RETRY_AFTER_SECONDS = 5
#: Buckets (s) of the request-duration histogram.
REQUEST_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300, 600)


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


class Refusal(Exception):
    """A request the guard refuses: HTTP ``status``, short ``code``, a sentence ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


def _disposition(value: bytes) -> tuple[str | None, str | None]:
    """(name, filename) of a part's ``Content-Disposition`` header; ``None`` where absent."""
    from python_multipart.multipart import parse_options_header

    kind, params = parse_options_header(value)
    if kind.lower() != b"form-data":
        raise Refusal(400, "malformed_multipart", "a multipart part is not form-data")
    name = params.get(b"name")
    filename = params.get(b"filename")
    return (
        name.decode("latin-1") if name is not None else None,
        filename.decode("latin-1") if filename is not None else None,
    )


class UploadInspector:
    """Streams a multipart body through python-multipart and checks its parts as they come.

    Exactly one part, the field :data:`UPLOAD_FIELD`, holding a file (a ``filename`` in its
    ``Content-Disposition``) whose name is at most :data:`MAX_FILENAME_BYTES`. ``feed`` and
    ``finish`` raise :class:`Refusal` at the first problem.
    """

    def __init__(self, boundary: bytes) -> None:
        from python_multipart.multipart import MultipartParser

        self.files = 0
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._error: Refusal | None = None
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        if self._error is not None:
            return
        try:
            self._check_part()
        except Refusal as err:
            self._error = err

    def _check_part(self) -> None:
        name, filename = _disposition(self._headers.get(b"content-disposition", b""))
        if name != UPLOAD_FIELD:
            raise Refusal(
                400,
                "unknown_field",
                f"the multipart field {name!r} is not accepted; send the volume as a file in "
                f"the field '{UPLOAD_FIELD}' (curl -F {UPLOAD_FIELD}=@scan.nii.gz)",
            )
        if filename is None:
            raise Refusal(
                400,
                "not_a_file",
                f"the field '{UPLOAD_FIELD}' holds a string, not an uploaded file; the server "
                f"never downloads URLs: fetch the file yourself and upload it "
                f"(curl -F {UPLOAD_FIELD}=@scan.nii.gz)",
            )
        if len(filename.encode("utf-8", "replace")) > MAX_FILENAME_BYTES:
            raise Refusal(
                400,
                "filename_too_long",
                f"the upload's file name is {len(filename)} characters, over "
                f"{MAX_FILENAME_BYTES}; rename the file (the name is not used otherwise)",
            )
        self.files += 1
        if self.files > 1:
            raise Refusal(
                400, "too_many_files", f"send exactly one file in '{UPLOAD_FIELD}' per request"
            )

    def feed(self, chunk: bytes) -> None:
        """Parse the next body chunk; raises :class:`Refusal` on the first bad part."""
        from python_multipart.exceptions import MultipartParseError

        if chunk:
            try:
                self._parser.write(chunk)
            except MultipartParseError as err:
                raise Refusal(
                    400, "malformed_multipart", f"the multipart body cannot be parsed ({err})"
                ) from None
        if self._error is not None:
            raise self._error

    def finish(self) -> None:
        """The body ended: it must have been complete and carried the file."""
        from python_multipart.multipart import MultipartState

        self.feed(b"")
        if self._parser.state is not MultipartState.END:
            raise Refusal(
                400,
                "malformed_multipart",
                "the multipart body ended before its closing boundary; send a complete "
                "multipart/form-data request (curl -F / httpx files=...)",
            )
        if self.files == 0:
            raise Refusal(
                400,
                "missing_volume",
                f"no file in the field '{UPLOAD_FIELD}'; send curl -F {UPLOAD_FIELD}=@scan.nii.gz",
            )


def _boundary(headers: dict[bytes, bytes]) -> bytes:
    from python_multipart.multipart import parse_options_header

    kind, params = parse_options_header(headers.get(b"content-type", b""))
    boundary = params.get(b"boundary", b"")
    if kind.lower() != b"multipart/form-data" or not boundary:
        raise Refusal(
            415,
            "not_multipart",
            f"send multipart/form-data with the volume as a file in the field '{UPLOAD_FIELD}' "
            f"(curl -F {UPLOAD_FIELD}=@scan.nii.gz); JSON bodies and URLs are not accepted",
        )
    if len(boundary) > 200:
        raise Refusal(400, "malformed_multipart", "the multipart boundary is over 200 bytes")
    return boundary


@functools.cache
def _http_collectors() -> tuple[Any, Any]:
    """The request counter and duration histogram, registered once per process.

    ``prometheus_client`` refuses a second collector of the same name in its global registry, so
    every :class:`RequestGuard` of a process (another worker app, a test) shares these.
    """
    import prometheus_client as prom

    return (
        prom.Counter(
            "minivess_http_requests",
            "HTTP requests by route (unknown paths fold into 'other') and status",
            ["route", "status"],
        ),
        prom.Histogram(
            "minivess_http_request_seconds",
            "HTTP request duration (s) by route",
            ["route"],
            buckets=REQUEST_BUCKETS,
        ),
    )


class _HttpMetrics:
    """Request count and duration by (route, status), created lazily in the worker."""

    def observe(self, route: str, status: int, seconds: float) -> None:
        total, duration = _http_collectors()
        total.labels(route, str(status)).inc()
        duration.labels(route).observe(seconds)


class RequestGuard:
    """ASGI middleware; see the module docstring for what it refuses and how.

    Args:
        app: the wrapped ASGI app.
        max_upload_bytes: largest request body accepted on the protected routes.
        token: the expected bearer token; ``None`` disables auth.
        routes: paths the guard applies to.
        max_concurrency: inference requests in flight before 503; ``None`` = unbounded.
        metrics_text: returns the Prometheus exposition (bytes) served at ``/metrics``;
            ``None`` passes ``/metrics`` to the app.
        metrics_token: ``/metrics`` needs the bearer token too.
        record: turn on the per-route request metrics (needs ``prometheus_client``).
    """

    def __init__(
        self,
        app: ASGIApp,
        max_upload_bytes: int,
        token: str | None = None,
        routes: Iterable[str] = PROTECTED_ROUTES,
        max_concurrency: int | None = None,
        metrics_text: Callable[[], bytes] | None = None,
        metrics_token: bool = False,
        record: bool = False,
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.token = token.encode() if token else None
        self.routes = frozenset(routes)
        self.max_concurrency = max_concurrency
        self.in_flight = 0
        self.metrics_text = metrics_text
        self.metrics_token = metrics_token
        self._metrics = _HttpMetrics() if record else None

    async def _reject(self, send: Send, status: int, code: str, detail: str, extra=()) -> None:
        start, body = _json_response(status, code, detail, list(extra))
        await send(start)
        await send(body)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self.token is None:
            return True
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)

    async def _unauthorized(self, send: Send) -> None:
        await self._reject(
            send,
            401,
            "unauthorized",
            "missing or wrong bearer token; send 'Authorization: Bearer <token>'",
            [(b"www-authenticate", b"Bearer")],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in KNOWN_ROUTES else OTHER_ROUTE
        status = {"code": 500}

        async def counting_send(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        t0 = time.perf_counter()
        try:
            await self._dispatch(scope, receive, counting_send, path)
        finally:
            if self._metrics is not None:
                self._metrics.observe(route, status["code"], time.perf_counter() - t0)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        if path == "/metrics" and self.metrics_text is not None:
            await self._serve_metrics(headers, send)
            return
        if path not in self.routes:
            await self.app(scope, receive, send)
            return
        if not self._authorized(headers):
            await self._unauthorized(send)
            return
        try:
            if scope.get("method") != "POST":
                raise Refusal(405, "method_not_allowed", f"{path} takes POST with a volume file")
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_upload_bytes:
                raise Refusal(413, "too_large", self._too_large(int(declared)))
            inspector = UploadInspector(_boundary(headers))
        except Refusal as err:
            await self._reject(send, err.status, err.code, err.detail, self._allow(err))
            return
        if self.max_concurrency is not None and self.in_flight >= self.max_concurrency:
            await self._reject(
                send,
                503,
                "overloaded",
                f"this replica is already running {self.in_flight} requests (its limit); retry "
                f"in {RETRY_AFTER_SECONDS} s",
                [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )
            return
        self.in_flight += 1
        try:
            await self._call_checked(scope, receive, send, inspector)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _allow(err: Refusal) -> list[tuple[bytes, bytes]]:
        return [(b"allow", b"POST")] if err.status == 405 else []

    async def _serve_metrics(self, headers: dict[bytes, bytes], send: Send) -> None:
        if self.metrics_token and not self._authorized(headers):
            await self._unauthorized(send)
            return
        assert self.metrics_text is not None
        body = await asyncio.to_thread(self.metrics_text)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _too_large(self, size: int) -> str:
        return (
            f"the request body is {size} bytes, over the limit of {self.max_upload_bytes}; send a "
            "smaller (e.g. gzip-compressed or cropped) volume or raise max_upload_bytes"
        )

    async def _call_checked(
        self, scope: Scope, receive: Receive, send: Send, inspector: UploadInspector
    ) -> None:
        state = {"seen": 0, "rejected": False, "started": False}

        async def refuse(err: Refusal) -> Message:
            state["rejected"] = True
            if not state["started"]:
                await self._reject(send, err.status, err.code, err.detail)
            return {"type": "http.disconnect"}

        async def checked_receive() -> Message:
            if state["rejected"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message.get("type") != "http.request":
                return message
            chunk = message.get("body", b"")
            state["seen"] += len(chunk)
            try:
                if state["seen"] > self.max_upload_bytes:
                    raise Refusal(413, "too_large", self._too_large(state["seen"]))
                inspector.feed(chunk)
                if not message.get("more_body", False):
                    inspector.finish()
            except Refusal as err:
                return await refuse(err)
            return message

        async def guarded_send(message: Message) -> None:
            if state["rejected"]:
                return  # the 4xx is already out; drop what the app says after the disconnect
            if message.get("type") == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, checked_receive, guarded_send)
        except Exception:
            if not state["rejected"]:
                raise
            # The app saw the disconnect we sent it after refusing; its error is expected.
