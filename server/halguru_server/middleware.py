"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs per request).

One layer gives every request an id (``X-Request-ID``, also passed to the run's
trace), enforces the body-size limit, records Prometheus metrics and writes one
structured JSON log line.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import HTTPException
from starlette.middleware.gzip import GZipMiddleware

from halguru.agents import telemetry
from halguru_server import inflight
from halguru_server.connections import HEAD_TOO_LARGE_MESSAGE, MAX_HEAD_BYTES
from halguru_server.console import denials
from halguru_server.metrics import Metrics

Scope = dict[str, Any]
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REPLICA_COOKIE = "halguru_replica"
# Their 503 reports what is wrong elsewhere; counted as a server error, a red /status would keep itself red.
HEALTH_PROBES = frozenset({"/readyz", "/status"})
# A metric label: any other method a client makes up counts as "other" (one series each would grow without bound)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
log = logging.getLogger("halguru.server.access")


class BodyTooLarge(HTTPException):
    """An HTTPException, so FastAPI's body parsing lets it through as 413 (not 'error parsing the body')."""

    def __init__(self, limit: int, setting: str = "HALGURU_SERVE_MAX_BODY_BYTES"):
        super().__init__(413, f"request body is larger than {limit} bytes ({setting})")


class RequestMiddleware:
    def __init__(self, app: Any, metrics: Metrics, max_body: int, loopback_only: bool = False,
                 replica: str | None = None, max_bundle: int | None = None,
                 draining: Callable[[], bool] = lambda: False):
        self.app, self.metrics, self.max_body, self.loopback_only = app, metrics, max_body, loopback_only
        # after SIGTERM, answers say ``Connection: close``: a pooled client drops its connection instead of
        # reusing it as the server closes its idle ones when the drain ends (a request sent then is reset)
        self.draining = draining
        self.max_bundle = max_bundle or max_body
        # Affinity for a load balancer (a conversation's KV cache lives on one replica); nothing depends on it.
        self.replica = [(b"x-halguru-replica", replica.encode())] if replica else []
        self.cookie = f"{REPLICA_COOKIE}={replica}".encode() if replica else b""
        self.telemetry = telemetry.enabled()  # OpenTelemetry: runs' trace ids in the request's log lines

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback_only and not _loopback_host(scope):
            await _misdirected(send)
            return
        if _head_bytes(scope) > MAX_HEAD_BYTES:  # the protocol refuses most before they are parsed; not a head
            await _head_too_large(send)  # that shares its first read with the end of a body nobody read
            return
        if not self.telemetry:
            await self._handle(scope, receive, send)
            return
        # A run this request starts joins the caller's trace and leaves its ids for the request's log lines.
        token = telemetry.REQUEST.set(telemetry.RequestTrace(
            *(next((v.decode("latin-1") for k, v in scope["headers"] if k == name), "")
              for name in (b"traceparent", b"tracestate"))))
        try:
            await self._handle(scope, receive, send)
        finally:
            telemetry.REQUEST.reset(token)

    async def _handle(self, scope: Scope, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = incoming if _SAFE_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        status = [500]
        first_byte = [0.0]
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        bundle = scope["path"] == "/v1/deployments"  # halguru publish: an agent bundle
        limit = self.max_bundle if bundle else self.max_body
        setting = "HALGURU_SERVE_MAX_BUNDLE_BYTES" if bundle else "HALGURU_SERVE_MAX_BODY_BYTES"
        if length is not None and length.isdigit() and int(length) > limit:
            receive = _refuse(limit, setting)
        else:  # every method: a chunked body on a GET was read whole, unlimited
            receive = _counting(receive, limit, setting)

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                first_byte[0] = time.perf_counter()
                headers = message.setdefault("headers", [])
                if 300 <= status[0] < 400:
                    _same_site_relative(scope, headers)
                if not scope["state"].get("upstream"):  # the auth proxy's upstream app keeps its own headers
                    _not_framed(headers)
                    _not_stored_if_private(scope, headers)
                headers.append((b"x-request-id", request_id.encode()))
                if self.draining() and all(k.lower() != b"connection" for k, _ in headers):
                    headers.append((b"connection", b"close"))
                if self.replica:
                    headers.extend(self.replica)
                    if not _has_cookie(scope, self.cookie):
                        headers.append((b"set-cookie", self.cookie + b"; Path=/; HttpOnly; SameSite=Lax"))
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                inflight.leave(scope["state"])  # before the client has the answer, and so may send the next
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            inflight.leave(scope["state"])  # an answer cut short (or none) gives its place back too
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            elapsed = (first_byte[0] or time.perf_counter()) - started
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(method, route, str(status[0])).inc()
            if route not in HEALTH_PROBES:
                self.metrics.request_done(status[0])
            self.metrics.latency.labels(route).observe(elapsed)
            if status[0] in denials.DENIED:
                denials.note_request(scope, status[0], route)
            if log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                log.info("request", extra={"fields": {
                    "request_id": request_id, "method": scope["method"], "path": scope["path"],
                    "route": route, "status": status[0], "duration_ms": round(elapsed * 1000, 2),
                    "client": client[0] if client else None}})


def _same_site_relative(scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
    """A redirect to this same site (Starlette's trailing-slash redirects build ``http://HOST/path`` from the
    request's own Host header) is made relative: a Host header a client made up is not sent back in
    ``Location``, where a cache in front could serve it to others."""
    host = next((v for k, v in scope["headers"] if k == b"host"), None)
    if host is None:
        return
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"location":
            for scheme in (b"http://", b"https://"):
                prefix = scheme + host
                if value.startswith(prefix) and value[len(prefix):len(prefix) + 1] in (b"/", b"?", b""):
                    headers[i] = (name, value[len(prefix):] or b"/")


def _not_framed(headers: list[tuple[bytes, bytes]]) -> None:
    """A page that sets no Content-Security-Policy of its own (/status, /swagger, a plugin's) may not be framed by
    another site (clickjacking) nor read as another type; the pages with a policy (console, chat, sign-in, the
    embeddable chat with its own ``frame-ancestors``) keep theirs."""
    names = {k.lower() for k, _ in headers}
    html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
    if not html or b"content-security-policy" in names:
        return
    headers.append((b"content-security-policy", b"frame-ancestors 'none'"))
    if b"x-frame-options" not in names:
        headers.append((b"x-frame-options", b"DENY"))
    if b"x-content-type-options" not in names:
        headers.append((b"x-content-type-options", b"nosniff"))


def _not_stored_if_private(scope: Scope, headers: list[tuple[bytes, bytes]]) -> None:
    """An answer to a caller the route identified (a session cookie, an API key, a chat session) is that
    caller's own (/auth/me holds the session's CSRF token): ``no-store`` unless the route said otherwise, so a
    cache in front never hands it to the next caller nor a browser keeps it on disk."""
    principal = scope["state"].get("principal")
    if principal is None or (getattr(principal, "anonymous", True) and getattr(principal, "session", None) is None):
        return
    if all(k.lower() != b"cache-control" for k, _ in headers):
        headers.append((b"cache-control", b"no-store"))


def _has_cookie(scope: Scope, pair: bytes) -> bool:
    """The request already carries this replica's cookie (so the response need not set it again)."""
    return any(k == b"cookie" and pair in [c.strip() for c in v.split(b";")] for k, v in scope["headers"])


def _loopback_host(scope: Scope) -> bool:
    """--dev has no keys: a page on another site whose name re-resolves to 127.0.0.1 (DNS rebinding) would
    reach it, so only loopback Host names are answered."""
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _head_bytes(scope: Scope) -> int:
    """About how long the request line and headers were on the wire."""
    return (len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            + sum(len(k) + len(v) + 4 for k, v in scope["headers"]))


async def _head_too_large(send: Any) -> None:
    body = json.dumps({"error": {"type": "too_large", "message": HEAD_TOO_LARGE_MESSAGE}})
    await send({"type": "http.response.start", "status": 431,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})


async def _misdirected(send: Any) -> None:
    body = json.dumps({"error": {"type": "misdirected", "message": "this --dev server answers only loopback Host "
                                 "names (localhost, 127.0.0.1, [::1]); open it by one of those"}}).encode()
    await send({"type": "http.response.start", "status": 421,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _refuse(limit: int, setting: str) -> Any:
    async def receive() -> dict[str, Any]:
        raise BodyTooLarge(limit, setting)

    return receive


def _counting(receive: Any, limit: int, setting: str) -> Any:
    seen = [0]

    async def wrapped() -> dict[str, Any]:
        message = await receive()
        if message["type"] == "http.request":
            seen[0] += len(message.get("body", b""))
            if seen[0] > limit:
                raise BodyTooLarge(limit, setting)
        return message

    return wrapped


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        data = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                "msg": record.getMessage(), **getattr(record, "fields", {}), **telemetry.log_ids()}
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    # psycopg's pool reports reconnection failures on its own logger: as JSON lines too, not plain text
    for name in ("halguru", "uvicorn", "uvicorn.error", "psycopg"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(level.upper())
    psycopg = logging.getLogger("psycopg")
    psycopg.setLevel(max(psycopg.level, logging.WARNING))  # its info lines are per connection
    logging.getLogger("uvicorn.access").disabled = True  # our access log has the request id


# The static text assets: the web chat's, the console's, Swagger UI's. Nothing else is compressed: API answers
# and SSE streams go out as written (a stream must not wait in a compressor), and pages that hold a session's
# tokens beside text a client sent must not be (BREACH).
GZIP_PATHS = ("/chat/static/", "/chat/widget.js", "/chat/sw.js", "/admin/assets/", "/swagger-assets/")


class StaticGZip:
    """gzip for the static assets (``GZIP_PATHS``) when the client accepts it: the chat's scripts 53 KB -> 20 KB,
    Swagger UI's bundle 1.5 MB -> 0.4 MB. A compressed answer's ETag is made weak (``W/``): it is another
    representation of the same file, as HTTP wants; revalidation still matches it.

    A file's compressed bytes are kept (by path and ETag, ``KEPT`` files at most): these paths are public, and
    compressing Swagger UI's bundle again for each GET, 50 anonymous clients asking for it at once took another
    user's GET /v1/agents from 2 ms to a p50 of 390 ms. Anything else (HEAD, a range, a 304) goes through
    Starlette's GZipMiddleware as before."""

    KEPT = 256

    def __init__(self, app: Any):
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=6)
        self.kept: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GZIP_PATHS):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and _accepts_gzip(scope) and not _header(scope, b"range"):
            await self._kept(scope, receive, send)
            return

        async def weak_etag(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _weak(message["headers"])
            await send(message)

        await self.gzip(scope, receive, weak_etag)

    async def _kept(self, scope: Scope, receive: Any, send: Any) -> None:
        """The file's answer, its body compressed once (then kept) if it is a whole 200 worth compressing."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def held(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, held)
        body = b"".join(chunks)
        headers = list(start.get("headers", []))
        etag = next((v for k, v in headers if k.lower() == b"etag"), None)
        if start.get("status") != 200 or etag is None or len(body) < 1024 or any(
                k.lower() == b"content-encoding" for k, _ in headers):
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        key = (scope["path"], etag)
        packed = self.kept.get(key)
        if packed is None:
            packed = await asyncio.to_thread(gzip.compress, body, 6, mtime=0)
            self.kept[key] = packed
            while len(self.kept) > self.KEPT:
                self.kept.popitem(last=False)
        headers = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"vary")]
        headers = _weak([*headers, (b"content-encoding", b"gzip"), (b"content-length", str(len(packed)).encode()),
                         (b"vary", b"Accept-Encoding")])
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": packed})


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


def _accepts_gzip(scope: Scope) -> bool:
    return b"gzip" in (_header(scope, b"accept-encoding") or b"").lower()


def _weak(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """A gzipped answer's ETag, made weak (another representation of the same file)."""
    if (b"content-encoding", b"gzip") not in headers:
        return headers
    return [(k, b"W/" + v if k == b"etag" and not v.startswith(b"W/") else v) for k, v in headers]
