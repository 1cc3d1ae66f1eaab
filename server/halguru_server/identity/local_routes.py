"""Local accounts in the browser: sign-in (password, then a TOTP or recovery code), registration, email
verification and password reset, as server-rendered forms (``pages``) over ``accounts`` and ``websessions``.

Every failed sign-in, at either step, shows the same line whether or not the email has an account, and the
reset form says the same for any address. A browser whose password step passed but whose second factor is still
due holds a session with ``mfa_done`` false: it reaches the code page, or enrolment when its role requires 2FA
and none is set up (``account_routes``), and nothing else. Passing the second factor starts a new session.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import time
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.background import BackgroundTask

from halguru.store.records import UserRecord, WebSessionRecord
from halguru_server import audit, ratelimit
from halguru_server.bodies import GuardedRoute
from halguru_server.identity import accounts, mailer, pages, websessions
from halguru_server.identity.guards import public
from halguru_server.identity.urls import safe_next
from halguru_server.keys import list_keys
from halguru_server.state import ServerState, get_state, rate_client

log = logging.getLogger("halguru.server.identity")
router = APIRouter(include_in_schema=False, dependencies=[Depends(public)],  # the pages check sessions themselves
                   route_class=GuardedRoute)
WRONG_CODE = "That code is not right (or was used already). Try the next one."
MAIL_FAILED = "The mail could not be sent just now; try again in a few minutes."
# Account mails one address gets in an hour (confirmation, reset, "you have an account"): the per-client limit
# alone let anyone send a victim 20 a minute from each address they have.
MAILS_PER_ADDRESS = 5
BAD_LINK = "This link is not valid: it was used already, has expired, or was copied incompletely."


def browser(request: Request) -> tuple[WebSessionRecord, UserRecord] | None:
    """The browser's live session and its user (second factor passed or not), else None."""
    state = get_state(request)
    secret = request.cookies.get(websessions.COOKIE)
    return websessions.verify(state.store, secret, state.settings.auth) if secret else None


def login_url(target: str) -> str:
    return "/auth/login" if target == "/" else f"/auth/login?next={quote(target, safe='')}"


def _login_page(request: Request, status: int = 200, *, error: str | None = None, notice: str | None = None,
                email: str = "", target: str = "/") -> HTMLResponse:
    state = get_state(request)
    token = pages.pre_token(request)
    auth = state.settings.auth
    providers = [(p.name, p.label or p.name.capitalize()) for p in auth.oidc]
    response = pages.render("login.html", status, title="Sign in", csrf=token, next=target, email=email,
                            error=error, notice=notice, providers=providers, registration=auth.registration)
    return pages.remember_pre(response, request, token)


@router.get("/auth/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in page; a browser signed in already goes on to ``next``."""
    target = safe_next(next)
    found = browser(request)
    if found is not None:
        return pages.redirect(target if found[0]["mfa_done"] else _second_step(found[1], target))
    return _login_page(request, target=target)


@router.post("/auth/login")
async def login(request: Request) -> Response:
    """The password step; then a new session, complete or waiting for the second factor."""
    state = get_state(request)
    data = await pages.pre_form(request)
    if data is None:
        return pages.refused()
    email, target = data.get("email", "").strip(), safe_next(data.get("next"))
    # Lockout is per account; this bounds one address trying many accounts (credential stuffing).
    address = rate_client(request, state.settings.trusted_proxies)
    wait = await asyncio.to_thread(state.store.rate_hit, f"login:{address}", state.settings.auth.login_rate_per_minute,
                                   60.0)
    if wait is not None:
        page = _login_page(request, 429, error=f"Too many sign-in attempts from your address; try again in "
                                                f"{int(wait) + 1} s.", email=email, target=target)
        page.headers["Retry-After"] = str(int(wait) + 1)
        return page
    try:
        user = await asyncio.to_thread(accounts.authenticate, state.store, email, data.get("password", ""),
                                       state.settings.auth, request.cookies.get(websessions.KNOWN_BROWSER_COOKIE))
    except accounts.SignInFailed as exc:
        await asyncio.to_thread(audit.record, request, "auth.sign_in_failed", email.lower()[:200], {"step": "password"})
        return _login_page(request, 401, error=str(exc), email=email, target=target)
    if not user["email_verified"]:
        sent = await _send_verification(request, state, user)
        return pages.message("Confirm your email first", "This account's email address is not confirmed yet.",
                             "A new confirmation link was sent to it." if sent else MAIL_FAILED,
                             links=(("/auth/login", "Sign in"),), status=403)
    needs = accounts.needs_2fa(user, state.settings.auth)
    response = pages.redirect(_second_step(user, target) if needs else target)
    await asyncio.to_thread(websessions.sign_in, request, response, user, mfa_done=not needs)
    return response


def _second_step(user: UserRecord, target: str) -> str:
    """Where a browser that passed the password goes for its second factor: the code, or enrolment."""
    where = "/auth/login/code" if user["totp_enabled"] else "/auth/2fa"
    return where if target == "/" else f"{where}?next={quote(target, safe='')}"


@router.get("/auth/login/code")
def code_form(request: Request, next: str = "/") -> Response:
    target = safe_next(next)
    found = browser(request)
    if found is None:
        return pages.redirect(login_url(target))
    session, user = found
    if session["mfa_done"] or not user["totp_enabled"]:
        return pages.redirect(target if session["mfa_done"] else _second_step(user, target))
    return pages.render("code.html", title="Two-factor sign-in", csrf=session["csrf"], next=target)


@router.post("/auth/login/code")
async def code(request: Request) -> Response:
    """The second step: a TOTP or recovery code. Wrong codes count towards the lockout like passwords (each code
    is counted before it is checked, so concurrent guesses get no more tries), and a lockout ends this
    half-signed-in session (the password is asked again)."""
    state = get_state(request)
    found = await asyncio.to_thread(browser, request)
    data = await pages.form(request)
    target = safe_next(data.get("next"))
    if found is None:
        return pages.redirect(login_url(target))
    session, user = found
    if not await pages.session_csrf_ok(request, state, session):
        return pages.refused()
    if session["mfa_done"] or not user["totp_enabled"]:
        return pages.redirect(target if session["mfa_done"] else _second_step(user, target))
    # counted before it is checked: a burst of guesses sent at once gets no more checks than the lockout allows
    auth = state.settings.auth
    limits = (user["id"], auth.login_max_failures, auth.lockout_base, auth.lockout_max)
    counted = await asyncio.to_thread(state.store.claim_login_attempt, *limits)
    own_try = counted is None and await asyncio.to_thread(  # a lock a stranger set: this browser's own tries
        accounts.known_browser_try, state.store, user, auth, request.cookies.get(websessions.KNOWN_BROWSER_COOKIE))
    factor = None if counted is None and not own_try else await asyncio.to_thread(
        accounts.verify_second_factor, state.store, user, data.get("code", "")[:64])
    if factor is None and own_try:
        await asyncio.to_thread(audit.record, request, "auth.sign_in_failed", user["id"],
                                {"step": "second_factor", "locked": True})
        return pages.render("code.html", 401, title="Two-factor sign-in", csrf=session["csrf"], next=target,
                            error=WRONG_CODE)
    if factor is None:
        after = counted if counted is not None else await asyncio.to_thread(state.store.record_login_failure,
                                                                             *limits)
        await asyncio.to_thread(audit.record, request, "auth.sign_in_failed", user["id"],
                                {"step": "second_factor", "locked": _locked(after)})
        if _locked(after):
            page = _login_page(request, 401, error=accounts.SIGN_IN_FAILED, target=target)
            await asyncio.to_thread(websessions.sign_out, request, page)
            return page
        return pages.render("code.html", 401, title="Two-factor sign-in", csrf=session["csrf"], next=target,
                            error=WRONG_CODE)
    await asyncio.to_thread(state.store.record_login_success, user["id"])
    response = pages.redirect(target)
    await asyncio.to_thread(websessions.sign_in, request, response, user, factor=factor)  # a new id: both passed
    return response


def _locked(user: UserRecord) -> bool:
    return user["locked_until"] is not None and user["locked_until"] > time.time()


# -- registration and email verification -----------------------------------------------------------------------
def _register_page(request: Request, status: int = 200, *, error: str | None = None, invite: str = "",
                   email: str = "", name: str = "") -> HTMLResponse:
    token = pages.pre_token(request)
    response = pages.render("register.html", status, title="Create an account", csrf=token, invite=invite,
                            email=email, name=name, error=error, min_password=accounts.MIN_PASSWORD)
    return pages.remember_pre(response, request, token)


def _registration_closed(state: ServerState, invite: str) -> HTMLResponse | None:
    """The page that says why this browser cannot register, or None when it may."""
    mode = state.settings.auth.registration
    if mode == "closed":
        return pages.message("Registration is closed", "Ask the operator of this server for an account.",
                             links=(("/auth/login", "Sign in"),), status=404)
    if mode == "invite" and not invite:
        return pages.message("Registration needs an invitation", "Open the invitation link you were sent.",
                             links=(("/auth/login", "Sign in"),), status=403)
    if mode == "open" and state.settings.auth.smtp is None:
        return pages.message("Registration is unavailable", "This server cannot send the mail that confirms an "
                             "address (no auth.smtp).", links=(("/auth/login", "Sign in"),), status=503)
    return None


@router.get("/auth/register")
def register_form(request: Request, invite: str = "") -> Response:
    state = get_state(request)
    invite = invite[:200]
    return _registration_closed(state, invite) or _register_page(request, invite=invite)


@router.post("/auth/register")
async def register(request: Request) -> Response:
    """A new account (role ``user``, or the invitation's), confirmed by a mailed link before it can sign in. An
    email that has an account gets a mail saying so instead, and the page reads the same either way."""
    state = get_state(request)
    data = await pages.pre_form(request)
    if data is None:
        return pages.refused()
    invite, name = data.get("invite", ""), data.get("name", "")[:100]
    closed = _registration_closed(state, invite)
    if closed is not None:
        return closed
    ratelimit.check(state.limiter, rate_client(request, state.settings.trusted_proxies))
    try:
        email = accounts.check_email(data.get("email", ""))
        accounts.check_password(data.get("password", ""), email)
    except accounts.AccountError as exc:
        return _register_page(request, 400, error=str(exc), invite=invite, email=data.get("email", ""), name=name)
    role, verified = "user", False
    if invite or state.settings.auth.registration == "invite":  # open registration honours invitations too
        grant = await asyncio.to_thread(accounts.consume_token, state.store, invite, "invite")
        bound = str(grant["data"].get("email", "")).lower() if grant else ""
        if grant is None or (bound and bound != email):
            return _register_page(request, 403, error=BAD_LINK + " Ask for a new invitation.", email=email,
                                  name=name)
        role, verified = str(grant["data"].get("role", "user")), bool(bound)
    return await _create(request, state, email, name, data["password"], role, verified)


async def _create(request: Request, state: ServerState, email: str, name: str, password: str, role: str,
                  verified: bool) -> Response:
    done = pages.message("Check your mail", f"A link to confirm {email} is on its way. Open it, then sign in.",
                         links=(("/auth/login", "Sign in"),))
    try:
        user = await asyncio.to_thread(accounts.create_user, state.store, email, role=role, name=name,
                                       password=password, email_verified=verified)
    except accounts.AccountError:  # the email has an account: its owner hears of it, this page does not say
        base = mailer.base_url(request, state.settings.auth, state.settings.host)
        if base is not None and await _may_mail(state, email):
            await _mail(state, email, "Your halguru account", "Someone asked to create a halguru account for "
                        f"this address, which has one already. To set a new password, open {base}/auth/reset"
                        "\n\nIf it was not you, ignore this mail.\n")
        return done
    await asyncio.to_thread(audit.record, request, "user.create", user["id"], {"email": user["email"], "role": role})
    if verified:
        return pages.message("Account created", "Your account is ready.", links=(("/auth/login", "Sign in"),),
                             status=201)
    return done if await _send_verification(request, state, user) else pages.message(
        "Account created", f"The account exists, but the confirmation mail could not be sent. {MAIL_FAILED} "
        "Signing in sends a new link.", links=(("/auth/login", "Sign in"),), status=201)


async def _may_mail(state: ServerState, to: str) -> bool:
    """Whether ``to`` may get another account mail this hour (``MAILS_PER_ADDRESS``); checked before a new
    link voids the older ones, so a flood of requests cannot leave the owner without a working link."""
    wait = await asyncio.to_thread(state.store.rate_hit, f"mail:{to.lower()}", MAILS_PER_ADDRESS, 3600.0)
    if wait is not None:
        log.warning("account mail not sent: %d sent to this address in the last hour", MAILS_PER_ADDRESS)
    return wait is None


async def _mail(state: ServerState, to: str, subject: str, text: str) -> bool:
    """Send an account mail; False (logged) when it could not go out."""
    try:
        await mailer.send(state.settings.auth, to, subject, text)
    except (mailer.MailNotConfigured, smtplib.SMTPException, OSError, ValueError):
        return False
    return True


async def _send_verification(request: Request, state: ServerState, user: UserRecord) -> bool:
    if not user["email"]:
        return False
    base = mailer.base_url(request, state.settings.auth, state.settings.host)
    if base is None or not await _may_mail(state, user["email"]):
        return False
    token = await asyncio.to_thread(accounts.issue_token, state.store, "verify", user["id"], mailer.VERIFY_TTL,
                                    {"email": user["email"]})
    url = mailer.link(base, "/auth/verify", token)
    return await _mail(state, user["email"], "Confirm your email for halguru", mailer.verification_text(url))


@router.get("/auth/verify")
def verify(request: Request, token: str = "") -> Response:
    """The link in the confirmation mail: the address is confirmed (once; the link then stops working)."""
    state = get_state(request)
    grant = accounts.consume_token(state.store, token, "verify")
    user = state.store.get_user(grant["user_id"]) if grant and grant["user_id"] else None
    if grant is None or user is None or user["email"] != grant["data"].get("email"):
        return pages.message("Link not valid", BAD_LINK, "Signing in sends a new one.",
                             links=(("/auth/login", "Sign in"),), status=400)
    state.store.update_user(user["id"], email_verified=True)
    return pages.message("Email confirmed", f"{user['email']} is confirmed: you can sign in now.",
                         links=(("/auth/login", "Sign in"),))


# -- password reset ----------------------------------------------------------------------------------------
@router.get("/auth/reset")
def reset_form(request: Request, token: str = "") -> Response:
    """Without a token: ask for the email. With one (the mailed link): the new-password form; the token is
    spent only when that form is sent, so a mail scanner opening the link spends nothing."""
    pre = pages.pre_token(request)
    if token:
        response = pages.render("reset_set.html", title="Choose a new password", csrf=pre, token=token[:200],
                                min_password=accounts.MIN_PASSWORD)
    else:
        response = pages.render("reset_request.html", title="Reset your password", csrf=pre)
    return pages.remember_pre(response, request, pre)


@router.post("/auth/reset")
async def reset_request(request: Request) -> Response:
    """Mail a reset link if the email has an enabled account (one that signs in only through an OIDC provider gets
    a mail naming the provider instead: ``accounts.providers_only``). The page reads the same for any address and is
    answered before anything is looked up or sent, so its timing does not tell either."""
    state = get_state(request)
    data = await pages.pre_form(request)
    if data is None:
        return pages.refused()
    ratelimit.check(state.limiter, rate_client(request, state.settings.trusted_proxies))
    response = pages.message("Check your mail", "If that address belongs to an account, a link to set a new "
                             "password is on its way. It works once, for one hour.",
                             links=(("/auth/login", "Sign in"),))
    base = mailer.base_url(request, state.settings.auth, state.settings.host)
    if base is not None:  # the page reads the same either way
        response.background = BackgroundTask(_send_reset, state, base, data.get("email", "").strip())
    return response


async def _send_reset(state: ServerState, base: str, email: str) -> None:
    user = await asyncio.to_thread(state.store.user_by_email, email) if "@" in email else None
    if user is None or user["disabled"] or not user["email"] or not await _may_mail(state, user["email"]):
        return
    providers = await asyncio.to_thread(accounts.providers_only, state.store, user)
    if providers:  # no password to reset: its owner hears how they sign in
        await _mail(state, user["email"], "Your halguru sign-in", mailer.provider_text(base, providers))
        return
    await asyncio.to_thread(state.store.revoke_auth_tokens, user["id"], "reset")  # only the newest link works
    token = await asyncio.to_thread(accounts.issue_token, state.store, "reset", user["id"], mailer.RESET_TTL)
    url = mailer.link(base, "/auth/reset", token)
    await _mail(state, user["email"], "Set a new halguru password", mailer.reset_text(url))


@router.post("/auth/reset/set")
async def reset_set(request: Request) -> Response:
    """The new password; the link is spent, and every session of the account is signed out."""
    state = get_state(request)
    data = await pages.pre_form(request)
    if data is None:
        return pages.refused()
    token, password = data.get("token", ""), data.get("password", "")
    grant = await asyncio.to_thread(accounts.peek_token, state.store, token, "reset")  # whose: not their email
    owner = await asyncio.to_thread(state.store.get_user, grant["user_id"]) if grant and grant["user_id"] else None
    try:
        accounts.check_password(password, owner["email"] if owner else None)
    except accounts.AccountError as exc:
        pre = pages.pre_token(request)
        return pages.render("reset_set.html", 400, title="Choose a new password", csrf=pre, token=token,
                            min_password=accounts.MIN_PASSWORD, error=str(exc),
                            revoke_keys=data.get("revoke_keys") == "yes")
    done = await asyncio.to_thread(_reset, state, token, password, data.get("revoke_keys") == "yes")
    if done is None:
        return pages.message("Link not valid", BAD_LINK, links=(("/auth/reset", "Ask for a new link"),),
                             status=400)
    user_id, revoked, working = done
    # by the owner of the mailbox (or whoever reads it): an account taken over this way must leave a trace
    await asyncio.to_thread(audit.record, request, "auth.password_reset", user_id,
                            {"signed_out": "everywhere", "keys_revoked": revoked}, actor=f"user:{user_id}")
    keys = ((f"Its API keys were revoked ({revoked}).",) if revoked else
            (f"Its API keys still work ({working}): revoke any you do not know (GET and DELETE /v1/keys).",)
            if working else ())
    return pages.message("Password changed", "Your new password is set, and every browser signed in to this "
                         "account was signed out.", *keys, links=(("/auth/login", "Sign in"),))


def _reset(state: ServerState, token: str, password: str, revoke_keys: bool) -> tuple[str, int, int] | None:
    """Spend the reset token and set the password (the address confirmed, every session signed out, and the
    API keys revoked if asked: whoever took the account may have made some). The user's id, the keys revoked
    and the keys still working; None for a link that is not valid."""
    grant = accounts.consume_token(state.store, token, "reset")
    user = state.store.get_user(grant["user_id"]) if grant and grant["user_id"] else None
    if user is None or user["disabled"] or accounts.providers_only(state.store, user):  # linked since it was mailed
        return None
    accounts.set_password(state.store, user["id"], password)
    state.store.update_user(user["id"], email_verified=True)  # the mailed link proves the address
    state.store.unlock_user(user["id"])  # and is how a locked-out owner gets back in without an admin
    websessions.revoke_all(state.store, user["id"])
    active = [key.id for key in list_keys(state.store, user["id"]) if key.state == "active"]
    if revoke_keys and active:
        state.store.revoke_keys(active)
        return user["id"], len(active), 0
    return user["id"], 0, len(active)
