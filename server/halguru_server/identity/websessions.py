"""Server-side web sessions: the ``halguru_session`` cookie holds 32 random bytes, the store only their SHA-256,
so a copy of the database signs nobody in. A session ends at its idle timeout (``auth.session_idle``), at its
absolute one (``auth.session_max_age``), when revoked (sign-out, "sign out everywhere", a disabled user), and
every sign-in starts a new one (no session fixation).

CSRF: a cookie rides along with any cross-site request, so each session has a token its pages send back (a
hidden ``csrf_token`` field or the ``X-CSRF-Token`` header) with every state change, and the request's
``Origin`` (else ``Referer``) must be this server. Requests with an API key (a header browsers never add on
their own) need neither.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from starlette.datastructures import FormData

from halguru.store.base import Store
from halguru.store.records import UserRecord, WebSessionRecord

if TYPE_CHECKING:
    from halguru_server.identity.settings import AuthSettings

COOKIE = "halguru_session"
KNOWN_BROWSER_COOKIE = "halguru_browser"
"""Set at a complete sign-in, sent only to /auth: the account's lock does not keep this browser out
(``accounts.remember_browser``)."""
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
TOUCH_EVERY = 60.0  # last_seen is written at most this often (the idle timeout is that precise)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PRUNE_AFTER = 86400.0  # sessions and tokens ended this long ago are deleted (at the next sign-in)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue(store: Store, user_id: str, settings: AuthSettings, *, mfa_done: bool = True,
          address: str | None = None, user_agent: str | None = None) -> tuple[str, WebSessionRecord]:
    """A new session for the user: the cookie value (shown only here) and the stored record."""
    secret = secrets.token_urlsafe(32)
    now = time.time()
    record = WebSessionRecord(id_hash=_hash(secret), user_id=user_id, csrf=secrets.token_urlsafe(24), created=now,
                              last_seen=now, expires=now + settings.session_max_age, mfa_done=mfa_done,
                              address=address, user_agent=(user_agent or "")[:300] or None, revoked=None)
    store.create_web_session(record)
    store.prune_web_sessions(now - PRUNE_AFTER)  # sign-ins are rare: the table stays small without a job
    return secret, record


def verify(store: Store, secret: str, settings: AuthSettings) -> tuple[WebSessionRecord, UserRecord] | None:
    """The live session a cookie names and its (enabled) user, else None: unknown, revoked, idle too long,
    past its absolute timeout, or of a disabled user. Activity is recorded (at most once a minute)."""
    if not secret or len(secret) > 100:
        return None
    session = store.get_web_session(_hash(secret))
    now = time.time()
    if (session is None or session["revoked"] is not None or session["expires"] <= now
            or session["last_seen"] + settings.session_idle <= now):
        return None
    user = store.get_user(session["user_id"])
    if user is None or user["disabled"]:
        return None
    if now - session["last_seen"] >= TOUCH_EVERY:
        store.touch_web_session(session["id_hash"], now)
    return session, user


def session_id(session: WebSessionRecord) -> str:
    """A session's public id (what the session list shows and DELETE /auth/sessions/{id} takes): a prefix of
    its hash, which cannot be turned back into the cookie."""
    return session["id_hash"][:16]


def revoke(store: Store, secret: str) -> bool:
    """Sign out the session this cookie names."""
    return bool(secret) and store.revoke_web_sessions(None, [_hash(secret)]) > 0


def revoke_by_id(store: Store, user_id: str, public_id: str) -> bool:
    """Revoke one of the user's sessions by its public id (``session_id``); False if it is not theirs."""
    for session in store.list_web_sessions(user_id):
        if session_id(session) == public_id:
            return store.revoke_web_sessions(user_id, [session["id_hash"]]) > 0
    return False


def revoke_all(store: Store, user_id: str, keep: WebSessionRecord | None = None) -> int:
    """Sign the user out everywhere (but ``keep``, the session asking, when given); how many."""
    return store.revoke_web_sessions(user_id, keep=keep["id_hash"] if keep else None)


def sign_out_everywhere(store: Store, user_id: str) -> int:
    """The person's "sign out everywhere": every session ends and no browser stays known to the account (one
    that a thief used keeps no tries of its own past a lock: ``accounts.remember_browser``); how many sessions."""
    from halguru_server.identity import accounts

    store.revoke_auth_tokens(user_id, accounts.KNOWN_BROWSER)
    return revoke_all(store, user_id)


def list_sessions(store: Store, user_id: str, settings: AuthSettings) -> list[WebSessionRecord]:
    """The user's live sessions (not revoked, idle or past their absolute timeout), most recent first."""
    idle_since = time.time() - settings.session_idle
    return [s for s in store.list_web_sessions(user_id) if s["last_seen"] > idle_since]


def mark_mfa_done(store: Store, session: WebSessionRecord) -> None:
    store.touch_web_session(session["id_hash"], time.time(), mfa_done=True)


# -- cookies ------------------------------------------------------------------------------------------------
def _trusted_peer(request: Request, trusted: list[str]) -> bool:
    peer = request.client.host if request.client else ""
    try:
        ip = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)


def is_https(request: Request, trusted_proxies: list[str]) -> bool:
    """Whether the browser reached us over https: directly, or as a trusted proxy's X-Forwarded-Proto says."""
    if request.url.scheme == "https":
        return True
    if trusted_proxies and _trusted_peer(request, trusted_proxies):
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return proto == "https"
    return False


def own_url(request: Request, trusted_proxies: list[str]) -> str:
    """This server's address as the browser reached it, without a trailing slash: the request's, over https when
    a trusted proxy says the browser used it (TLS ends at that proxy; links built from the plain request's http
    would send browsers, and OIDC codes, over plain http)."""
    url = request.base_url
    if url.scheme == "http" and is_https(request, trusted_proxies):
        url = url.replace(scheme="https")
    return str(url).rstrip("/")


def site_url(request: Request, auth: AuthSettings, trusted_proxies: list[str]) -> str:
    """Where browsers (and identity providers) reach this server, without a trailing slash: ``auth.public_url``
    when set, else ``own_url``."""
    return auth.public_url.rstrip("/") if auth.public_url else own_url(request, trusted_proxies)


def set_cookie(response: Response, request: Request, secret: str, settings: AuthSettings,
               trusted_proxies: list[str]) -> None:
    """HttpOnly, SameSite=Lax, Path=/, Secure over https; it lives as long as the session may."""
    response.set_cookie(COOKIE, secret, max_age=int(settings.session_max_age), path="/", httponly=True,
                        samesite="lax", secure=is_https(request, trusted_proxies))


def clear_cookie(response: Response, request: Request, trusted_proxies: list[str]) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax",
                           secure=is_https(request, trusted_proxies))


def _server_state(request: Request) -> Any:
    return request.app.state.halguru


def sign_in(request: Request, response: Response, user: UserRecord, *, mfa_done: bool = True,
            factor: str | None = None) -> WebSessionRecord:
    """Start a new session for ``user`` and set its cookie on ``response``; a session the browser already had
    is revoked (a new id on every sign-in: no fixation). ``mfa_done=False`` while the second factor is still to
    come (the guards then let the session reach nothing but the 2FA pages). ``factor``: the second factor that
    passed (``totp``, ``recovery_code``), for the audit log."""
    state = _server_state(request)
    old = request.cookies.get(COOKIE)
    if old:
        revoke(state.store, old)
    from halguru_server.state import client_address

    secret, record = issue(state.store, user["id"], state.settings.auth, mfa_done=mfa_done,
                           address=client_address(request, state.settings.trusted_proxies),
                           user_agent=request.headers.get("user-agent"))
    set_cookie(response, request, secret, state.settings.auth, state.settings.trusted_proxies)
    if mfa_done:  # signed in (with both factors, when 2FA is due); the audit module imports guards: import here
        from halguru_server import audit
        from halguru_server.identity import accounts

        known = accounts.remember_browser(state.store, user["id"], request.cookies.get(KNOWN_BROWSER_COOKIE))
        if known:
            response.set_cookie(KNOWN_BROWSER_COOKIE, known, max_age=int(accounts.KNOWN_BROWSER_TTL), path="/auth",
                                httponly=True, samesite="lax", secure=is_https(request, state.settings.trusted_proxies))

        details = {"via": request.url.path, **({"factor": factor} if factor else {})}
        audit.record(request, "auth.sign_in", user["id"], details, actor=f"user:{user['id']}")
    return record


def sign_out(request: Request, response: Response) -> bool:
    """Revoke the browser's session server-side and clear its cookie."""
    state = _server_state(request)
    secret = request.cookies.get(COOKIE, "")
    clear_cookie(response, request, state.settings.trusted_proxies)
    return revoke(state.store, secret)


# -- CSRF -----------------------------------------------------------------------------------------------------
def same_origin(request: Request, trusted_proxies: list[str], public_url: str | None = None) -> bool:
    """Whether the request's Origin (else Referer) is this server: its Host (as the browser used it, over the
    scheme it used) or the configured public URL. Neither header: refused (browsers send Origin on POST)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    scheme = "https" if is_https(request, trusted_proxies) else "http"
    host = request.headers.get("host", "")
    allowed = {f"{scheme}://{host}".lower()}
    if public_url:
        public = urlsplit(public_url)
        allowed.add(f"{public.scheme}://{public.netloc}".lower())
    return origin in allowed


async def posted_form(request: Request) -> FormData:
    """The posted form, without file parts: no page of ours uploads one, and each is a spooled file object (a form of
    999 cost ~2.8 MB before the sign-in page's CSRF check refused it); the first is a 400. Starlette keeps the form
    read first, so every reader goes through here."""
    return await request.form(max_files=0)


async def csrf_token_sent(request: Request) -> str:
    """The CSRF token the request carries: the header, else a form field (the form is read and cached, so the
    route still gets it)."""
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await posted_form(request)).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def csrf_ok(request: Request, session: WebSessionRecord, trusted_proxies: list[str],
                  public_url: str | None = None) -> bool:
    """A safe method, or the session's CSRF token and a same-origin Origin/Referer."""
    if request.method in SAFE_METHODS:
        return True
    if not same_origin(request, trusted_proxies, public_url):
        return False
    # bytes: compare_digest refuses str with non-ASCII characters, which a header or field may hold
    return hmac.compare_digest((await csrf_token_sent(request)).encode(), session["csrf"].encode())
