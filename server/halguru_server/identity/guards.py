"""The guard every route declares (docs/identity.md, "Guards"): ``Depends(require("chat:use"))`` resolves the
caller and refuses it unless its role has the permission, or ``Depends(public)`` for what anyone may reach
(health, static files, sign-in pages, webhooks that check their own signature).

A guard is also where cookie-authenticated requests are held to the session's rules: the second factor must
be done (unless the route is part of finishing it) and every state change must carry the session's CSRF
token from this server's own origin. Each guard carries a ``Guard`` under ``GUARD_ATTR`` so that
tests/server/test_route_matrix.py can find it on every route: a route without one fails that test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.dependencies.models import Dependant

from halguru_server.errors import ApiError
from halguru_server.identity import websessions
from halguru_server.state import Principal, get_state, resolve

GUARD_ATTR = "__halguru_guard__"
PUBLIC_MOUNTS = frozenset({"/chat/static", "/swagger-assets", "/auth/static"})
"""Mounted static folders (no dependencies can run there): public by design, and listed so a new mount fails
the route matrix until it is added here."""


@dataclass(frozen=True)
class Guard:
    """What a route demands: a permission (None: public), whether anonymous visitors may try, and whether a
    session still owing its second factor may pass."""

    permission: str | None
    anonymous: bool = False
    mfa_pending: bool = False
    capped: bool = True  # counted in the caller's requests in flight (inflight.py); off for what stops abuse


def require(permission: str, *, anonymous: bool = False, mfa_pending: bool = False,
            capped: bool = True) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency resolving the caller (``Principal``), refusing it without ``permission``: 401 when nobody
    is signed in (unless ``anonymous``: web-chat visitors, whose permissions are a user's on public agents),
    403 when the role lacks it or a cookie request fails CSRF, 429 past the caller's requests in flight (unless
    not ``capped``: the routes that stop abuse, such as revoking a key, inflight.py)."""
    demand = Guard(permission, anonymous, mfa_pending, capped)

    async def guard(request: Request) -> Principal:
        return await admit(request, demand)

    setattr(guard, GUARD_ATTR, demand)
    guard.__name__ = f"require_{permission.replace(':', '_')}"
    return guard


async def admit(request: Request, demand: Guard, *, csrf: bool = True) -> Principal:
    """The caller, if ``demand`` (a permission's) lets it in. ``csrf=False`` leaves out the one check that may
    read the body (a form's CSRF field): what a route checks before its body is read (``bodies.GuardedRoute``)."""
    assert demand.permission is not None, "a public route admits anyone"
    cached = getattr(request.state, "principal", None)
    # off the event loop: a key or session lookup is a round trip to a database server, which would
    # stall every other request of this replica meanwhile
    principal = cached if isinstance(cached, Principal) else await asyncio.to_thread(resolve, request)
    if principal.anonymous and not demand.anonymous:
        raise ApiError(401, "an API key is required: send 'Authorization: Bearer KEY' (create one with "
                            "`halguru keys create NAME`), or sign in at /auth/login",
                       headers={"WWW-Authenticate": "Bearer"})
    if principal.web is not None:
        await _check_session(request, principal, demand.mfa_pending, csrf)
    if not principal.can(demand.permission):
        raise ApiError(403, f"your role ({principal.role or 'anonymous'}) may not do this: it takes "
                            f"{demand.permission!r}", "forbidden")
    if demand.capped and not principal.dev:
        get_state(request).in_flight.enter(request.scope.setdefault("state", {}), principal.client)
    return principal


async def _check_session(request: Request, principal: Principal, mfa_pending: bool, csrf: bool) -> None:
    assert principal.web is not None
    if not principal.web["mfa_done"] and not mfa_pending:
        raise ApiError(401, "finish signing in: enter your two-factor code at /auth/2fa", "mfa_required")
    if not csrf:
        return
    settings = get_state(request).settings
    if not await websessions.csrf_ok(request, principal.web, settings.trusted_proxies, settings.auth.public_url):
        raise ApiError(403, "cross-site request refused: a signed-in page sends its CSRF token (X-CSRF-Token "
                            "header or csrf_token field) from this server's origin", "csrf")


async def public() -> None:
    """Anyone may reach the route (it checks whatever it needs itself: a webhook's signature, a sign-in form)."""


setattr(public, GUARD_ATTR, Guard(None, anonymous=True, mfa_pending=True))


def guard_of(call: object) -> Guard | None:
    """The ``Guard`` a dependency carries, if it is one."""
    found = getattr(call, GUARD_ATTR, None)
    return found if isinstance(found, Guard) else None


def guards_in(dependant: Dependant | None) -> list[Guard]:
    """The guards among a route's dependencies (its dependant's; an included router's own are in the route as
    served), at any depth."""
    found, stack = [], [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        if (guard := guard_of(current.call)) is not None:
            found.append(guard)
        stack.extend(current.dependencies)
    return found
