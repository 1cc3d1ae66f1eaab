"""``/auth/oidc/{provider}/login`` and ``/callback``: the browser's side of OIDC sign-in (``identity.oidc``).

A refused sign-in answers one line (an HTML page for browsers, the API's JSON error shape otherwise), never a
trace; the reason is logged. The flow cookie (``halguru_oidc``, HttpOnly, SameSite=Lax, only sent to
/auth/oidc) binds a sign-in to the browser that started it; Lax lets it ride along on the provider's top-level
redirect back, and nothing cross-site can set it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response

from halguru_server import audit, ratelimit
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import error_response
from halguru_server.identity import accounts, oidc, pages, websessions
from halguru_server.identity.guards import public
from halguru_server.identity.urls import safe_next
from halguru_server.state import get_state, rate_client

log = logging.getLogger("halguru.server.oidc")
FLOW_COOKIE = "halguru_oidc"
FLOW_PATH = "/auth/oidc"
SECOND_FACTOR = "/auth/login"  # a session owing its second factor: the sign-in page sends it on to code or enrolment
router = APIRouter(prefix=FLOW_PATH, tags=["sign-in"], include_in_schema=False, dependencies=[Depends(public)],
                   route_class=GuardedRoute)


def _redirect_uri(request: Request, name: str) -> str:
    """Where the provider sends the browser back: under ``auth.public_url`` when set (behind a proxy, what the
    provider registered), else this request's own address (https when a trusted proxy says so)."""
    settings = get_state(request).settings
    base = websessions.site_url(request, settings.auth, settings.trusted_proxies)
    return f"{base}{FLOW_PATH}/{quote(name, safe='')}/callback"


async def _refused(request: Request, exc: oidc.OidcError, provider: str) -> Response:
    log.warning("OIDC sign-in refused", extra={"fields": {"provider": provider[:40], "reason": exc.message}})
    await asyncio.to_thread(audit.record, request, "auth.sign_in_failed", provider[:40],
                            {"step": "oidc", "reason": exc.message})  # a store write: off the event loop
    if "text/html" in request.headers.get("accept", ""):
        return pages.message("Sign-in refused", status=exc.status, error=exc.message,
                             links=(("/auth/login", "Back to sign-in"),))
    return error_response(exc.status, exc.message, "sign_in_refused")


@router.get("/{provider}/login")
async def oidc_login(request: Request, provider: str, next: str = "/") -> Response:
    """Send the browser to the provider's sign-in, to come back to ``next`` (a local path) afterwards."""
    state = get_state(request)
    address = rate_client(request, state.settings.trusted_proxies)
    await asyncio.to_thread(ratelimit.check, state.limiter, address)  # each start stores a row: not unbounded
    binding = request.cookies.get(FLOW_COOKIE, "")
    if not 20 <= len(binding) <= 64:  # kept when present: sign-ins started in two tabs both work
        binding = secrets.token_urlsafe(24)
    try:
        config = oidc.provider(state.settings.auth, provider)
        url = await oidc.begin(state.store, config, safe_next(next), _redirect_uri(request, config.name), binding)
    except oidc.OidcError as exc:
        return await _refused(request, exc, provider)
    response = pages.redirect(url)
    response.set_cookie(FLOW_COOKIE, binding, max_age=int(oidc.FLOW_TTL), path=FLOW_PATH, httponly=True,
                        samesite="lax", secure=websessions.is_https(request, state.settings.trusted_proxies))
    return response


@router.get("/{provider}/callback")
async def oidc_callback(request: Request, provider: str) -> Response:
    """The provider's answer: verify it, sign the user in (a new session), go on to the sign-in's ``next``."""
    state = get_state(request)
    # Each refusal writes the audit log: bounded per address, like the starts (a real sign-in is one of each).
    await asyncio.to_thread(ratelimit.check, state.limiter, rate_client(request, state.settings.trusted_proxies))
    try:
        config = oidc.provider(state.settings.auth, provider)
        claims, next_url = await oidc.complete(state.store, config, request.query_params,
                                               request.cookies.get(FLOW_COOKIE))
        user = await asyncio.to_thread(oidc.account_for, state.store, config, claims)
    except oidc.OidcError as exc:
        return await _refused(request, exc, provider)
    pending = accounts.needs_2fa(user, state.settings.auth)
    target = safe_next(next_url)
    response = pages.redirect(f"{SECOND_FACTOR}?next={quote(target, safe='')}" if pending else target)
    await asyncio.to_thread(websessions.sign_in, request, response, user, mfa_done=not pending)
    if not pending:  # else the code step does, once it passes: a new OIDC sign-in must not reset its failures
        await asyncio.to_thread(state.store.record_login_success, user["id"])
    log.info("OIDC sign-in", extra={"fields": {"provider": config.name, "user": user["id"]}})
    return response
