"""Auth proxy mode: halguru's sign-in in front of another internal app (``auth.proxy``).

Requests under ``prefix`` reach ``upstream`` only with a live, fully signed-in session (second factor
done) whose role is at least ``role``; the upstream gets who it is in the headers oauth2-proxy made usual
(``X-Forwarded-User``, ``-Email``, ``-Preferred-Username``, ``-Groups``) plus ``X-Forwarded-Prefix``,
and the browser's address and scheme (``-For``, ``-Proto``; a trusted proxy's word for them).
Whatever the client sent under those names is dropped first, and the session cookie never leaves halguru,
so the upstream can trust the headers as long as only the proxy can reach it (bind it to loopback or a
private network). Bodies stream both ways, a request's with the client's Content-Length when it sent one
(many small apps, Python's http.server among them, read a body only by its length, never chunked); a browser
without a session is sent to the sign-in page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from halguru.store.records import UserRecord
from halguru_server.identity import websessions
from halguru_server.identity.guards import public
from halguru_server.identity.roles import ROLES
from halguru_server.state import client_address

if TYPE_CHECKING:
    from halguru_server.identity.settings import ProxySettings

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
IDENTITY = ("x-forwarded-user", "x-forwarded-email", "x-forwarded-preferred-username", "x-forwarded-groups",
            "x-forwarded-prefix", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-auth-request-user",
            "x-auth-request-email", "x-auth-request-groups", "x-remote-user", "remote-user", "forwarded",
            "x-real-ip", "x-forwarded-port", "x-forwarded-server", "x-forwarded-scheme", "x-forwarded-ssl")
# Set by the server that answers (uvicorn): the upstream's copies would go out twice.
OWN_RESPONSE_HEADERS = frozenset({"date", "server"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def allowed(user_role: str, least: str) -> bool:
    """Whether ``user_role`` is ``least`` or above it (ROLES is ordered most powerful first)."""
    return user_role in ROLES and ROLES.index(user_role) <= ROLES.index(least)


def _said(text: str) -> bytes:
    """A value halguru says (a user's name, email): UTF-8, as oauth2-proxy sends it, each run of control
    characters (a line break in a name) a space; httpx encodes a str as ASCII, which failed on "José" (a 500
    each request)."""
    return _CONTROL.sub(" ", text).encode()


def identity_headers(request: Request, user: UserRecord, prefix: str,
                     trusted_proxies: list[str] | None = None) -> dict[bytes, bytes]:
    """The request's headers as the upstream gets them: hop-by-hop, spoofable identity headers and the
    session cookie removed; the signed-in user added. A name with an underscore goes too (as nginx and Apache
    drop them): WSGI and CGI servers read ``X_Forwarded_User`` as ``X-Forwarded-User`` and join the two.
    Content-Length stays: the body is streamed as it comes, and with the length httpx sends it as it is
    rather than chunked (uvicorn has checked that the body is exactly that long). ``X-Forwarded-For`` and
    ``-Proto`` are the browser's address and scheme, as a trusted proxy in front (``trusted_proxies``) said
    them: not that proxy's address, nor http for a browser on https (the upstream's own links and redirects)."""
    trusted = trusted_proxies or []
    # the browser's as it sent them, byte for byte (Starlette read them as latin-1)
    headers = {k: v.encode("latin-1") for k, v in request.headers.items() if (k not in HOP_BY_HOP
               or k == "content-length") and k not in IDENTITY and k != "cookie" and "_" not in k}
    cookies = [f"{k}={v}" for k, v in request.cookies.items() if k != websessions.COOKIE]
    if cookies:
        headers["cookie"] = "; ".join(cookies).encode("latin-1")
    headers.update({
        "x-forwarded-user": _said(user["id"]), "x-forwarded-email": _said(user["email"] or ""),
        "x-forwarded-preferred-username": _said(user["name"] or user["email"] or user["id"]),
        "x-forwarded-groups": _said(user["role"]), "x-forwarded-prefix": _said(prefix),
        "x-forwarded-for": _said(client_address(request, trusted)),
        "x-forwarded-proto": b"https" if websessions.is_https(request, trusted) else b"http",
        "x-forwarded-host": request.headers.get("host", "").encode("latin-1"),
    })
    return {k.encode("latin-1"): v for k, v in headers.items()}


def _response_headers(upstream: httpx.Response, base: str, prefix: str) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus hop-by-hop ones, byte for byte (a UTF-8 filename in Content-Disposition
    was re-encoded as latin-1: a 500 past it); a redirect to the upstream's own address is rewritten to go
    through the proxy (the browser cannot reach the upstream)."""
    out = []
    for raw_key, raw_value in upstream.headers.raw:
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key in HOP_BY_HOP or key in OWN_RESPONSE_HEADERS or key == "content-encoding":
            continue
        if key == "location" and value.startswith(base):
            value = prefix + value[len(base):] or "/"
        out.append((key.encode("latin-1"), value.encode("latin-1")))
    return out


_SAFE = "/%:@!$&'()*+,;=-._~?"  # kept as they are in a path or query (RFC 3986 pchar, and existing %XX escapes)


def upstream_path(request: Request, prefix: str) -> bytes | None:
    """The path below ``prefix`` as the client sent it, still percent-encoded (``a%2Fb`` stays one segment,
    ``//x`` stays in the path), to go after the upstream's own path; None when a segment is ``.`` or ``..``
    (also encoded), which would climb out of that path on the upstream."""
    raw = request.scope.get("raw_path") or quote(request.url.path).encode()
    rest = raw[len(prefix):] if raw.startswith(prefix.encode()) else None
    if rest is None or rest[:1] not in (b"", b"/"):  # the prefix was sent encoded: the decoded path's rest
        rest = quote(request.url.path[len(prefix):]).encode()
    if any(unquote(segment) in (".", "..") for segment in rest.decode("latin-1").split("/")):
        return None
    return quote(rest, safe=_SAFE).encode() or b"/"


def _refusal(request: Request, status: int, message: str) -> Response:
    """A browser asking for a page goes to sign-in; anything else gets a one-line JSON error."""
    if status == 401 and request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", ""):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/auth/login?next={quote(here, safe='')}", status_code=303)
    return JSONResponse({"error": {"message": message, "type": "auth_proxy"}}, status_code=status)


def install(app: FastAPI, settings: ProxySettings) -> None:
    """Route ``settings.prefix`` and everything under it to the upstream."""
    base = settings.upstream.rstrip("/")
    _check_upstream(base)
    prefix = settings.prefix.rstrip("/")
    upstream = httpx.URL(base)
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0), follow_redirects=False)

    async def forward(request: Request) -> Response:
        state = request.app.state.halguru
        # off the event loop, as the guards': a session lookup is a round trip to a database server, which would
        # hold up every other request of this replica meanwhile
        found = await asyncio.to_thread(websessions.verify, state.store, request.cookies.get(websessions.COOKIE, ""),
                                        state.settings.auth)
        if found is None or not found[0]["mfa_done"]:
            return _refusal(request, 401, "sign in first: /auth/login")
        _session, user = found
        if not allowed(user["role"], settings.role):
            return _refusal(request, 403, f"the {settings.role} role or above is needed for {prefix}")
        if request.method not in websessions.SAFE_METHODS and not websessions.same_origin(
                request, state.settings.trusted_proxies, state.settings.auth.public_url):
            return _refusal(request, 403, "cross-site request refused")
        path = upstream_path(request, prefix)
        if path is None:
            return _refusal(request, 400, "a path with '.' or '..' segments is not passed on; use the plain path")
        query = request.scope.get("query_string", b"")
        upstream_request = client.build_request(
            request.method, upstream.copy_with(raw_path=upstream.raw_path.rstrip(b"/") + path
                                               + (b"?" + quote(query, safe=_SAFE).encode() if query else b"")),
            headers=identity_headers(request, user, prefix, state.settings.trusted_proxies),
            content=_body(request) if _has_body(request) else None)
        try:
            answer = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            return _refusal(request, 502, f"the upstream app at {base} did not answer ({type(exc).__name__})")
        request.state.upstream = True  # its headers are the app's (the middleware adds no framing policy)
        response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code,
                                     background=BackgroundTask(answer.aclose))
        response.raw_headers.extend(_response_headers(answer, base, prefix))  # repeated ones (Set-Cookie) kept
        return response

    for route in (prefix, prefix + "/{path:path}"):
        # Guarded here, not by a permission: the least role and a finished sign-in (see forward).
        app.add_api_route(route, forward, methods=METHODS, include_in_schema=False, dependencies=[Depends(public)])


def _has_body(request: Request) -> bool:
    """Whether the client sends a body (a GET without one must not reach the upstream chunked)."""
    length = request.headers.get("content-length")
    return "transfer-encoding" in request.headers or (length is not None and length.strip() != "0")


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        yield chunk


def _check_upstream(base: str) -> None:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        from halguru.errors import HalguruError

        raise HalguruError(f"invalid auth.proxy.upstream {base!r}: use an http(s) URL, e.g. http://127.0.0.1:9000")
