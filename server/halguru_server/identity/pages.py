"""What the server-rendered sign-in pages share: Jinja2 templates (autoescaped), their security headers, form
reading, and CSRF for the forms shown before anyone is signed in.

The pages carry no script at all (their Content-Security-Policy says ``script-src 'none'``). A form
shown to a signed-in browser sends its session's CSRF token (``websessions.csrf_ok``); the forms before sign-in
(login, register, reset) have no session yet, so they use a double-submit token: a random ``halguru_csrf``
cookie (HttpOnly, SameSite=Lax) that the form must repeat, plus the same Origin check. A page on another site
cannot read that cookie, so it cannot forge the field: it cannot sign a victim into the attacker's account
(login CSRF) or send reset mail in their name. (Lax, not Strict: a Strict cookie is not sent when a link from
elsewhere opens the page, so the page would set a new one and break a form open in another tab.)
"""

from __future__ import annotations

import hmac
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from halguru_server.errors import ApiError
from halguru_server.identity import websessions
from halguru_server.state import ServerState, get_state

TEMPLATES = Path(__file__).parent / "templates"
PRE_COOKIE = "halguru_csrf"
MAX_FIELD = 4096  # no form field of these pages is longer (a password has at most 1024 characters)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    # A reset or invite token in the address never leaves in a Referer to another site; not no-referrer, with
    # which Chromium sends "Origin: null" on form posts and the same-origin check could not pass.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # recovery codes, secrets and CSRF tokens stay out of caches
    "X-Frame-Options": "DENY",
}


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                       auto_reload=False)


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page from ``templates/`` (every value escaped unless a template marks it safe)."""
    html = _env().get_template(template).render({"error": None, "notice": None, "wide": False, **context})
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def message(title: str, *lines: str, links: tuple[tuple[str, str], ...] = (), status: int = 200,
            error: str | None = None) -> HTMLResponse:
    """A page that only says something (mail sent, link expired...) with links onwards."""
    return render("message.html", status, title=title, lines=lines, links=links, error=error)


def redirect(url: str) -> RedirectResponse:
    """303: the browser follows a form post with a GET (a reload never posts twice)."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


async def form(request: Request) -> dict[str, str]:
    """The posted form's text fields (starlette caches it, so the CSRF check has read the same)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise ApiError(415, "post this page's form (application/x-www-form-urlencoded)")
    data = await websessions.posted_form(request)
    return {k: v[:MAX_FIELD] for k, v in data.items() if isinstance(v, str)}


# -- CSRF before sign-in (double submit + Origin) --------------------------------------------------------------
def pre_token(request: Request) -> str:
    """The browser's pre-sign-in CSRF token (its cookie), or a new one ``remember_pre`` must set."""
    token = request.cookies.get(PRE_COOKIE, "")
    return token if 20 <= len(token) <= 64 else secrets.token_urlsafe(24)


def remember_pre(response: HTMLResponse, request: Request, token: str) -> HTMLResponse:
    """Set the pre-sign-in CSRF cookie (once) on a page that shows a form."""
    if request.cookies.get(PRE_COOKIE) != token:
        state = get_state(request)
        response.set_cookie(PRE_COOKIE, token, path="/auth", httponly=True, samesite="lax",
                            secure=websessions.is_https(request, state.settings.trusted_proxies))
    return response


async def pre_csrf_ok(request: Request) -> bool:
    """A pre-sign-in form post: from this server's pages (Origin) and repeating the browser's cookie token."""
    state = get_state(request)
    if not websessions.same_origin(request, state.settings.trusted_proxies, state.settings.auth.public_url):
        return False
    cookie = request.cookies.get(PRE_COOKIE, "")
    sent = (await form(request)).get(websessions.CSRF_FIELD, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())  # bytes: any text compares


async def pre_form(request: Request) -> dict[str, str] | None:
    """A pre-sign-in form's fields if it passes ``pre_csrf_ok``, else None (answer ``refused()``)."""
    return await form(request) if await pre_csrf_ok(request) else None


async def session_csrf_ok(request: Request, state: ServerState, session: Any) -> bool:
    return await websessions.csrf_ok(request, session, state.settings.trusted_proxies, state.settings.auth.public_url)


def refused() -> HTMLResponse:
    """The answer to a form post that fails its CSRF check (another site's form, or a stale page)."""
    return message("Request refused", "This form did not come from this site's current page, so it was not "
                   "carried out. Go back, reload the page and try again.", status=403,
                   links=(("/auth/login", "Sign in"),))
