"""A signed-in browser's own account pages: TOTP enrolment (QR code, recovery codes shown once) and its removal,
the session list with revoke and "sign out everywhere", and sign-out. Forms only, each with the session's CSRF
token.

Enrolment is also where a user whose role requires 2FA lands after the password step while none is set up:
their session is not complete (``mfa_done`` false) until a code from the new secret confirms it, and then a new
session replaces it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from halguru.store.records import UserRecord, WebSessionRecord
from halguru_server import audit
from halguru_server.bodies import GuardedRoute
from halguru_server.identity import accounts, pages, websessions
from halguru_server.identity.guards import public
from halguru_server.identity.local_routes import browser, login_url
from halguru_server.identity.urls import safe_next
from halguru_server.state import ServerState, get_state

router = APIRouter(include_in_schema=False, dependencies=[Depends(public)],  # the pages check sessions themselves
                   route_class=GuardedRoute)
CODE_TRIES = 5  # codes an account may try a minute at enrolment and removal (as password changes)
TOO_MANY_CODES = "Too many codes tried; wait a minute before trying again."


def _twofa_page(state: ServerState, session: WebSessionRecord, user: UserRecord, status: int = 200,
                error: str | None = None, target: str = "/") -> Response:
    """Enrolment (a pending secret of this session's own, shown again until confirmed) or, when on, removal."""
    required = user["role"] in state.settings.auth.require_2fa_roles
    context: dict[str, Any] = {"title": "Two-factor sign-in", "csrf": session["csrf"], "email": user["email"],
                               "enabled": user["totp_enabled"], "required": required and not session["mfa_done"],
                               "ask_password": _asks_password(session, user), "error": error, "next": target}
    if not user["totp_enabled"]:
        secret = accounts.enrolment_secret(state.store, user["id"], session)
        svg = accounts.qr_svg(accounts.provisioning_uri(user, secret))
        context.update(secret=secret, qr_svg=svg[svg.find("<svg"):])  # no XML prolog inside HTML
    return pages.render("twofa.html", status, **context)


async def _too_many_codes(state: ServerState, user: UserRecord) -> bool:
    """Whether this account tried its codes ``CODE_TRIES`` times this minute: a stolen session must not become a
    way to guess the authenticator's code (enabling again hands out new recovery codes; disabling removes 2FA)."""
    return await asyncio.to_thread(state.store.rate_hit, f"2fa:{user['id']}", CODE_TRIES, 60.0) is not None


def _asks_password(session: WebSessionRecord, user: UserRecord) -> bool:
    """Whether turning 2FA on takes the account's password too: from a signed-in browser (not the sign-in's own
    enrolment, which has just been given it) of an account that has one. A stolen cookie alone must not put its
    holder's authenticator on the account: the owner, signed out, could not sign in again without an admin."""
    return bool(session["mfa_done"] and user["password_hash"])


def _enrolling(found: tuple[WebSessionRecord, UserRecord] | None) -> bool:
    """A complete session, or one whose second factor is enrolment itself (no TOTP yet)."""
    return found is not None and (found[0]["mfa_done"] or not found[1]["totp_enabled"])


@router.get("/auth/2fa")
def twofa(request: Request, next: str = "/") -> Response:
    target = safe_next(next)
    found = browser(request)
    if not _enrolling(found):
        return pages.redirect(login_url("/auth/2fa") if found is None else "/auth/login/code")
    assert found is not None
    return _twofa_page(get_state(request), *found, target=target)


@router.post("/auth/2fa/enable")
async def twofa_enable(request: Request) -> Response:
    """Confirm the pending secret with a code: 2FA is on, the recovery codes are shown (this once), the other
    sessions of the account are signed out and this browser gets a new, complete session."""
    state = get_state(request)
    found = await asyncio.to_thread(browser, request)
    data = await pages.form(request)
    target = safe_next(data.get("next"))
    if not _enrolling(found):
        return pages.redirect(login_url("/auth/2fa"))
    assert found is not None
    session, user = found
    if not await pages.session_csrf_ok(request, state, session):
        return pages.refused()
    if await _too_many_codes(state, user):
        return _twofa_page(state, session, user, 429, TOO_MANY_CODES, target)
    if _asks_password(session, user) and not await asyncio.to_thread(accounts.verify_password, state.store, user,
                                                                      data.get("password", "")):
        return _twofa_page(state, session, user, 400, "Your password is not right.", target)
    try:
        codes = await asyncio.to_thread(accounts.enrolment_confirm, state.store, user["id"], session,
                                        data.get("code", "")[:64])
    except accounts.AccountError as exc:
        return _twofa_page(state, session, user, 400, str(exc), target)
    response = pages.render("recovery.html", title="Recovery codes", codes=codes, next=target)
    await asyncio.to_thread(audit.record, request, "user.2fa_enable", user["id"], {"recovery_codes": len(codes)})
    await asyncio.to_thread(_enrolled, request, response, session, user)
    return response


def _enrolled(request: Request, response: Response, session: WebSessionRecord, user: UserRecord) -> None:
    """2FA is on: the account's other sessions end, and this browser's is replaced by a complete one."""
    store = get_state(request).store
    websessions.revoke_all(store, user["id"], keep=session)
    if not session["mfa_done"]:  # this was the sign-in's second step: it passed
        store.record_login_success(user["id"])
    websessions.sign_in(request, response, user, factor="totp")


@router.post("/auth/2fa/disable")
async def twofa_disable(request: Request) -> Response:
    """Turn TOTP off with a current code (not while the user's role requires it)."""
    state = get_state(request)
    found = await _complete(request)
    if found is None:
        return pages.redirect(login_url("/auth/2fa"))
    session, user = found
    if not await pages.session_csrf_ok(request, state, session):
        return pages.refused()
    if user["role"] in state.settings.auth.require_2fa_roles:
        return _twofa_page(state, session, user, 403, f"The role {user['role']} requires two-factor sign-in.")
    if await _too_many_codes(state, user):
        return _twofa_page(state, session, user, 429, TOO_MANY_CODES)
    code = (await pages.form(request)).get("code", "")[:64]
    if not await asyncio.to_thread(accounts.verify_totp, state.store, user, code):
        return _twofa_page(state, session, user, 400, "That code is not right (or was used already).")
    await asyncio.to_thread(state.store.set_totp, user["id"], None, enabled=False)
    await asyncio.to_thread(state.store.set_recovery_codes, user["id"], [])
    await asyncio.to_thread(audit.record, request, "user.2fa_disable", user["id"], {})
    return pages.redirect("/auth/account")


# -- the account page: sessions -----------------------------------------------------------------------------
def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC") if at else ""


async def _complete(request: Request) -> tuple[WebSessionRecord, UserRecord] | None:
    """The browser's session and user if both factors are done (read off the event loop)."""
    found = await asyncio.to_thread(browser, request)
    return found if found is not None and found[0]["mfa_done"] else None


@router.get("/auth/account")
def account(request: Request) -> Response:
    """Who is signed in, with every browser signed in to the account (each can be signed out), including one
    that passed the password but not the second factor: a sign that someone else knows the password."""
    found = browser(request)
    if found is None or not found[0]["mfa_done"]:
        return pages.redirect(login_url("/auth/account") if found is None else "/auth/login/code")
    return _account_page(get_state(request), *found)


def _account_page(state: ServerState, session: WebSessionRecord, user: UserRecord, status: int = 200,
                  error: str | None = None, notice: str | None = None) -> Response:
    current = websessions.session_id(session)
    rows = [{"id": websessions.session_id(s), "created": _when(s["created"]), "last_seen": _when(s["last_seen"]),
             "address": s["address"] or "", "user_agent": (s["user_agent"] or "")[:80],
             "current": websessions.session_id(s) == current, "pending": not s["mfa_done"]}
            for s in websessions.list_sessions(state.store, user["id"], state.settings.auth)]
    return pages.render("account.html", status, title="Your account", wide=True, csrf=session["csrf"],
                        email=user["email"], role=user["role"], totp_enabled=user["totp_enabled"], sessions=rows,
                        has_password=bool(user["password_hash"]), error=error, notice=notice)


@router.post("/auth/password")
async def change_password(request: Request) -> Response:
    """A new password, given the current one; every other browser of the account is signed out."""
    state = get_state(request)
    found = await _complete(request)
    if found is None:
        return pages.redirect(login_url("/auth/account"))
    session, user = found
    if not await pages.session_csrf_ok(request, state, session):
        return pages.refused()
    data = await pages.form(request)
    # A stolen session must not become a way to guess the password: a few tries a minute per account.
    if await asyncio.to_thread(state.store.rate_hit, f"password:{user['id']}", 5, 60.0) is not None:
        return await asyncio.to_thread(_account_page, state, session, user, 429,
                                       "Too many tries; wait a minute before changing your password again.")
    if not await asyncio.to_thread(accounts.verify_password, state.store, user, data.get("current", "")):
        await asyncio.to_thread(audit.record, request, "auth.password_change_failed", user["id"], {})
        return await asyncio.to_thread(_account_page, state, session, user, 400,
                                       "Your current password is not right.")
    if data.get("new", "") != data.get("confirm", ""):
        return await asyncio.to_thread(_account_page, state, session, user, 400, "The new passwords differ.")
    try:
        await asyncio.to_thread(accounts.set_password, state.store, user["id"], data.get("new", ""))
    except accounts.AccountError as exc:
        return await asyncio.to_thread(_account_page, state, session, user, 400, f"{str(exc).capitalize()}.")
    signed_out = await asyncio.to_thread(websessions.revoke_all, state.store, user["id"], session)
    await asyncio.to_thread(audit.record, request, "auth.password_change", user["id"], {"signed_out": signed_out})
    return await asyncio.to_thread(_account_page, state, session, user, 200, None,
                                   f"Password changed; {signed_out} other browser(s) signed out.")


@router.post("/auth/sessions/revoke")
async def revoke_session(request: Request) -> Response:
    """Sign out one of the account's other browsers."""
    state = get_state(request)
    found = await _complete(request)
    if found is None:
        return pages.redirect(login_url("/auth/account"))
    session, user = found
    if not await pages.session_csrf_ok(request, state, session):
        return pages.refused()
    public_id = (await pages.form(request)).get("session", "")[:64]
    await asyncio.to_thread(websessions.revoke_by_id, state.store, user["id"], public_id)
    await asyncio.to_thread(audit.record, request, "auth.sign_out", user["id"], {"session": public_id})
    return pages.redirect("/auth/account")


@router.post("/auth/logout-everywhere")
async def logout_everywhere(request: Request) -> Response:
    """Sign out every browser of the account, this one included."""
    state = get_state(request)
    found = await _complete(request)
    if found is None:
        return pages.redirect("/auth/login")
    session, user = found
    if not await pages.session_csrf_ok(request, state, session):
        return pages.refused()
    await asyncio.to_thread(websessions.sign_out_everywhere, state.store, user["id"])
    await asyncio.to_thread(audit.record, request, "auth.sign_out", user["id"], {"everywhere": True})
    response = pages.message("Signed out everywhere", "Every browser signed in to your account is signed out.",
                             links=(("/auth/login", "Sign in"),))
    await asyncio.to_thread(websessions.sign_out, request, response)
    return response


@router.post("/auth/logout")
async def logout(request: Request) -> Response:
    """Sign out this browser (its session is revoked server-side, not only its cookie dropped)."""
    state = get_state(request)
    found = await asyncio.to_thread(browser, request)
    if found is not None and not await pages.session_csrf_ok(request, state, found[0]):
        return pages.refused()
    response = pages.redirect("/auth/login")
    if found is not None:
        await asyncio.to_thread(audit.record, request, "auth.sign_out", found[1]["id"])
    await asyncio.to_thread(websessions.sign_out, request, response)
    return response
