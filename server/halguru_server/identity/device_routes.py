"""Signing a command-line program in through the browser (OAuth 2.0 device authorization, RFC 8628 style):
``halguru login URL`` asks for a code (``POST /auth/device/code``), shows its short user code and the page
``/auth/device``, and polls ``POST /auth/device/token``. A person signed in here (both factors, permission
``keys:own``) enters or confirms the code and approves; the next poll gets a new API key of that person's
(scope ``user``, 90 days, named after the program), which the CLI keeps in the keyring.

Codes live in ``auth_tokens`` (hashed, single use, 10 minutes): the device code (only the program knows it),
the user code (what the page consumes on approval) and the approval itself (what the poll consumes).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from halguru_server import audit
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity import pages, roles, websessions
from halguru_server.identity.guards import public
from halguru_server.identity.local_routes import browser, login_url
from halguru_server.keys import create_key
from halguru_server.state import ServerState, client_address, get_state, rate_client, state_of

router = APIRouter(prefix="/auth/device", tags=["account"], dependencies=[Depends(public)],
                   responses=responses(400, 429), route_class=GuardedRoute)
pages_router = APIRouter(include_in_schema=False, dependencies=[Depends(public)],  # the page checks the session
                         route_class=GuardedRoute)
State = Annotated[ServerState, Depends(state_of)]
LIFETIME_S = 600.0
INTERVAL_S = 2
KEY_LIFETIME_S = 90 * 86400.0
CODE_TRIES = 10
"""User codes one person may enter (or open) in ``LIFETIME_S``: a slip of the keyboard is retried, but someone
signed in cannot guess the live codes of other people's programs (and hand them a key to their own account)."""
BAD_CODE = "That code is not valid, was used already or has expired. Start again with `halguru login`."
_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels (no words), no look-alikes


class DeviceCodeOut(BaseModel):
    device_code: str = Field(description="the program's secret: send it to /auth/device/token")
    user_code: str = Field(description="what the person enters (or confirms) on the verification page")
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int = Field(description="seconds between polls")


class DeviceTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_code: str = Field(min_length=10, max_length=200)


class DeviceTokenOut(BaseModel):
    access_token: str = Field(description="an API key of the person who approved (shown this once)")
    token_type: str = "bearer"
    expires_in: int


def _hash(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()


def _normal(user_code: str) -> str:
    return "".join(c for c in user_code.upper() if c.isalnum())


def _key_name(data: dict[str, Any]) -> str:
    """The new key's name on the keys list: where the program asked from, so a key nobody recognises stands out."""
    address = str(data.get("address") or "")[:45]
    return f"halguru login from {address} ({time.strftime('%Y-%m-%d')})" if address else \
        f"halguru login ({time.strftime('%Y-%m-%d')})"


def _too_many_tries(state: ServerState, user_id: str) -> str | None:
    """Counts one code entered by this person; what to tell them once they tried ``CODE_TRIES`` in
    ``LIFETIME_S``, else None. Shared by every replica (the store)."""
    wait = state.store.rate_hit(f"device_user:{user_id}", CODE_TRIES, LIFETIME_S)
    if wait is None:
        return None
    return (f"Too many codes tried from your account; try again in {int(wait) // 60 + 1} min. If you did not "
            "enter them, sign out everywhere from your account page.")


@router.post("/code", response_model=DeviceCodeOut)
def device_code(request: Request, state: State) -> DeviceCodeOut:
    """Start signing a program in: its device code (secret) and the user code a person approves."""
    wait = state.limiter.retry_after(f"device:{rate_client(request, state.settings.trusted_proxies)}")
    if wait is not None:
        raise ApiError(429, "too many sign-in attempts from here; wait a minute", "rate_limited",
                       headers={"Retry-After": str(int(wait) + 1)})
    device = secrets.token_urlsafe(32)
    user = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    expires = time.time() + LIFETIME_S
    state.store.create_auth_token(_hash("device", device), "device", None, {}, expires)
    asker = {"address": client_address(request, state.settings.trusted_proxies),
             "agent": request.headers.get("user-agent", "")[:80], "asked": time.time()}
    state.store.create_auth_token(_hash("user_code", user), "device_user", None,
                                  {"device": _hash("device", device), **asker}, expires)
    base = websessions.site_url(request, state.settings.auth, state.settings.trusted_proxies)
    shown = f"{user[:4]}-{user[4:]}"
    return DeviceCodeOut(device_code=device, user_code=shown, verification_uri=f"{base}/auth/device",
                         verification_uri_complete=f"{base}/auth/device?code={shown}", expires_in=int(LIFETIME_S),
                         interval=INTERVAL_S)


@router.post("/token", response_model=DeviceTokenOut)
def device_token(request: Request, state: State, body: Annotated[DeviceTokenIn, Body()]) -> DeviceTokenOut:
    """The poll: 400 ``authorization_pending`` until a person approves (or the code expires), then the key."""
    approval = state.store.consume_auth_token(_hash("approved", _hash("device", body.device_code)), "device_ok")
    if approval is None or approval["user_id"] is None:
        raise ApiError(400, "waiting for approval at /auth/device (or the code expired)", "authorization_pending")
    state.store.consume_auth_token(_hash("device", body.device_code), "device")
    name = str(approval["data"].get("name") or "halguru login")[:100]
    key, secret = create_key(state.store, name, None, KEY_LIFETIME_S, "user", user_id=approval["user_id"])
    audit.record(request, "key.create", key.id, {"name": key.name, "scope": key.scope,
                                                 "user_id": approval["user_id"], "via": "device"},
                 actor=f"user:{approval['user_id']}")
    return DeviceTokenOut(access_token=secret, expires_in=int(KEY_LIFETIME_S))


@pages_router.get("/auth/device")
def device_page(request: Request, code: str = "") -> Response:
    """Approve a program's code (signed in, both factors done; else to the sign-in page and back here)."""
    found = browser(request)
    shown = _normal(code)[:8]
    target = f"/auth/device?code={shown}" if shown else "/auth/device"
    if found is None or not found[0]["mfa_done"]:
        return pages.redirect(login_url(target) if found is None else "/auth/login/code")
    session, user = found
    state = get_state(request)
    page: dict[str, Any] = {"title": "Sign in a program", "csrf": session["csrf"], "who": user["email"] or user["name"]}
    if not shown:
        return pages.render("device.html", code="", **page)
    limited = _too_many_tries(state, user["id"])  # opening a code tells whether it is live: it counts
    if limited:
        return pages.render("device.html", 429, code="", error=limited, **page)
    row = state.store.get_auth_token(_hash("user_code", shown), "device_user")
    if row is None:
        return pages.render("device.html", 400, code="", error=BAD_CODE, **page)
    return pages.render("device.html", code=f"{shown[:4]}-{shown[4:]}",
                        asker=_asker(row["data"], client_address(request, state.settings.trusted_proxies)),
                        **page)


def _asker(data: dict[str, Any], browser_address: str) -> dict[str, Any]:
    """What the approval page says of the program that asked for a code (RFC 8628 5.4: a person sent someone
    else's code must see that it is not their own): its address, program and how long ago, and whether that
    address is not this browser's."""
    address = str(data.get("address") or "unknown")
    minutes = max(0, int((time.time() - float(data.get("asked") or time.time())) // 60))
    return {"address": address, "agent": str(data.get("agent") or "")[:80],
            "ago": "just now" if minutes == 0 else f"{minutes} min ago", "elsewhere": address != browser_address}


@pages_router.post("/auth/device")
async def device_approve(request: Request) -> Response:
    state = get_state(request)
    found = await asyncio.to_thread(browser, request)
    if found is None or not found[0]["mfa_done"]:
        return pages.redirect(login_url("/auth/device"))
    session, user = found
    if not await pages.session_csrf_ok(request, state, session):
        return pages.refused()
    if "keys:own" not in roles.permissions(user["role"]):
        return pages.message("Not allowed", f"The role {user['role']} cannot sign programs in (it has no API "
                             "keys).", status=403)
    code = _normal((await pages.form(request)).get("user_code", ""))[:8]
    limited = await asyncio.to_thread(_too_many_tries, state, user["id"])
    if limited:
        return pages.render("device.html", 429, title="Sign in a program", csrf=session["csrf"],
                            who=user["email"] or user["name"], code="", error=limited)
    row = await asyncio.to_thread(state.store.consume_auth_token, _hash("user_code", code), "device_user")
    if row is None:
        return pages.render("device.html", 400, title="Sign in a program", csrf=session["csrf"],
                            who=user["email"] or user["name"], code="", error=BAD_CODE)
    agent = request.headers.get("user-agent", "")[:60]
    await asyncio.to_thread(state.store.create_auth_token, _hash("approved", str(row["data"]["device"])),
                            "device_ok", user["id"], {"name": _key_name(row["data"]), "agent": agent},
                            time.time() + LIFETIME_S)
    return pages.message("Program signed in", "Done: go back to your terminal. The program now holds an API "
                         "key of yours (90 days); revoke it on your keys list when you no longer need it.")
