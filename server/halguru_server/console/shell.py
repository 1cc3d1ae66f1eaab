"""The console's shell: templates, navigation, security headers, static assets and how refused guards answer
a browser (see the package docstring for how a page is built)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, describe
from halguru_server.identity.guards import public
from halguru_server.state import Principal

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
ASSETS = {"console.css": "text/css", "console.js": "text/javascript"}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not no-referrer: Chromium would send "Origin: null" on form posts
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
NAV: tuple[tuple[str, str, str], ...] = (
    ("Monitoring", "/admin", "metrics:read"),
    ("Conversations", "/admin/conversations", "conversations:read_all"),
    ("Approvals", "/admin/approvals", "runs:approve_all"),
    ("Jobs", "/admin/jobs", "jobs:read_all"),
    ("Opt-outs", "/admin/opt-outs", "conversations:read_all"),
    ("Deployments", "/admin/deployments", "agents:publish"),
    ("Audit", "/admin/audit", "audit:read"),
    ("Users", "/admin/users", "users:manage"),
    ("Security", "/admin/security", "security:read"),
    ("Analytics", "/admin/analytics", "metrics:read"),
    ("Status", "/admin/status", "metrics:read"),
)
"""The console's sections: label, path, the permission its guard asks (links the caller may not follow are
left out of the navigation)."""


def when(ts: float | None) -> str:
    """An epoch time as ``YYYY-MM-DD HH:MM:SS`` UTC ('' for None)."""
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def stamp(ts: float | None) -> Markup:
    """An epoch time as a ``<time>`` element: ``YYYY-MM-DD HH:MM:SS UTC``, which console.js turns into the
    viewer's own time zone (the UTC value stays on hover, in its title); '' for None."""
    if ts is None:
        return Markup("")
    utc = datetime.fromtimestamp(ts, UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S") + " UTC"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.isoformat(timespec="seconds").replace("+00:00", "Z"), text, text)


def ago(ts: float | None, now: float | None = None) -> str:
    """How long ago, coarsely (``5 s``, ``3 min``, ``2 h``, ``4 d``); '' for None."""
    if ts is None:
        return ""
    delta = max(0.0, (now or time.time()) - ts)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if delta >= size:
            return f"{int(delta // size)} {unit}"
    return f"{int(delta)} s"


def number(value: float | int | None, digits: int = 0) -> str:
    """A number with thousands separators ('–' for None)."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


@lru_cache(maxsize=1)
def env() -> Environment:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                              auto_reload=False, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(when=when, stamp=stamp, ago=ago, number=number)
    return environment


def nav_for(caller: Principal) -> list[tuple[str, str]]:
    """The sections this caller may open."""
    return [(label, path) for label, path, permission in NAV if caller.can(permission)]


def section_of(path: str) -> str:
    """The section a page is in (``/admin/users/usr_1`` is in Users), marked current in the navigation: only
    the sections' own pages were, so a conversation, a user or an export's error page showed no section."""
    return next((href for _, href, _ in NAV if href != "/admin" and (path == href or path.startswith(href + "/"))),
                "/admin" if path in ("/admin", "/admin/") else "")


def render(request: Request, caller: Principal, template: str, title: str, status: int = 200,
           **context: Any) -> HTMLResponse:
    """A full console page: ``template`` extends ``console_base.html``."""
    who = caller.user["email"] or caller.user["name"] if caller.user is not None else ("dev" if caller.dev else "")
    if caller.web is not None and not said_here(request.query_params, caller):
        context = {**context, "notice": None, "error": None}  # a link's own text, not what this server said
    html = env().get_template(template).render(
        title=title, nav=nav_for(caller), path=request.url.path, section=section_of(request.url.path),
        who=who, role=caller.role or "",
        csrf=caller.web["csrf"] if caller.web is not None else "", now=time.time(),
        **{"notice": None, "error": None, **context})
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def fragment(template: str, **context: Any) -> HTMLResponse:
    """A piece of a page (no layout) that ``console.js`` swaps into a ``data-live`` element."""
    return HTMLResponse(env().get_template(template).render(**context), headers=HEADERS)


SAID = ("notice", "error", "deleted")
"""Query parameters a page shows as what happened ("Deleted conversation …", a refusal in red). They come back
from the form's post signed for the session (``said``): a link anyone could write showed any text there, as
the console's own word ("Your 2FA was reset: enrol again at https://…")."""


def _said_mac(pairs: list[tuple[str, str]], caller: Principal) -> str:
    key = (caller.web["csrf"] if caller.web is not None else "").encode()
    return hmac.new(key, urlencode(sorted(pairs)).encode(), hashlib.sha256).hexdigest()[:32]


def said_here(query: Mapping[str, str], caller: Principal) -> bool:
    """Whether the page's ``SAID`` parameters (none: yes) are the ones this session's post came back with."""
    pairs = [(name, query[name]) for name in SAID if name in query]
    # bytes: compare_digest refuses str with non-ASCII characters, which a link may hold
    return not pairs or hmac.compare_digest(query.get("said", "").encode(), _said_mac(pairs, caller).encode())


def back(url: str, caller: Principal | None = None) -> RedirectResponse:
    """303 after a form post: the browser shows ``url`` with a GET (a reload never posts twice); its ``SAID``
    parameters signed for ``caller``'s session."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "said"]
    if caller is not None and (said := [(k, v) for k, v in pairs if k in SAID]):
        url = f"{parts.path}?{urlencode([*pairs, ('said', _said_mac(said, caller))])}"
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.method == "GET" and "text/html" in accept


def _form_post(request: Request) -> bool:
    """A console page's form, posted by a browser."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return request.method == "POST" and "text/html" in request.headers.get("accept", "") and kind in (
        "application/x-www-form-urlencoded", "multipart/form-data")


def _page_of(request: Request) -> str:
    """The page to come back to after signing in: this one with its filters; for a form posted, the console
    page it was posted from (its Referer, when on this server), else the form's section."""
    if request.method == "GET":
        return f"{request.url.path}?{request.url.query}" if request.url.query else request.url.path
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.path.startswith("/admin"):
        return f"{referer.path}?{referer.query}" if referer.query else referer.path
    return "/".join(request.url.path.split("/")[:3])


def _refused_page(request: Request, exc: ApiError) -> Response:
    if exc.status == 401 and exc.type != "mfa_required":
        return RedirectResponse(f"/auth/login?next={quote(_page_of(request), safe='')}", status_code=303)
    if exc.status == 401:
        return RedirectResponse("/auth/login/code", status_code=303)
    return _problem_page(request, exc.status, exc.message)


def _problem_page(request: Request, status: int, message: str) -> HTMLResponse:
    """A short HTML page saying why (a browser showed the API's JSON), with a link back: the page without its
    filters when they were wrong (for an export, the page it is the export of), else the section above (a
    deleted conversation's link)."""
    path = request.url.path
    back = path if request.url.query or path.count("/") < 3 else path.rsplit("/", 1)[0]
    if path.endswith(".csv"):  # a download's bad filter: its page, not the download again without its filters
        back = path.rsplit("/", 1)[0]
    heading = {403: "Not allowed", 404: "Not found"}.get(status, "Cannot show this page")
    html = env().get_template("refused.html").render(message=message, status=status, heading=heading, back=back)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


class ConsoleRoute(GuardedRoute):
    """A console route: a browser's GET refused by the guard gets the sign-in page (401) or a short HTML page
    (403), and one with a bad filter or address (400, 404, 422: a 0 typed as the window) a page saying so, not
    the API's JSON error; so does a page's form posted when signed out (sign in, then back to that page) or
    refused; API clients (Accept: application/json) get the JSON as everywhere."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.status in (400, 401, 403, 404, 409, 422) and _wants_html(request):
                    return _refused_page(request, exc)
                if exc.status in (401, 403) and _form_post(request):  # signed out meanwhile, or a forged post
                    return _refused_page(request, exc)
                raise
            except RequestValidationError as exc:
                if _wants_html(request):
                    return _problem_page(request, 422, describe(list(exc.errors())))
                raise

        return answer


def page_router(**kwargs: Any) -> APIRouter:
    """An ``/admin`` router for pages (left out of the OpenAPI document)."""
    return APIRouter(prefix="/admin", include_in_schema=False, route_class=ConsoleRoute, **kwargs)


assets = APIRouter(prefix="/admin", include_in_schema=False, route_class=GuardedRoute)


@assets.get("/assets/{name}", dependencies=[Depends(public)])
def asset(name: str) -> Response:
    """The console's CSS and script (an allow-list: nothing else in the folder is served)."""
    if name not in ASSETS:
        raise HTTPException(404)
    return FileResponse(STATIC / name, media_type=ASSETS[name],
                        headers={**HEADERS, "Cache-Control": "public, max-age=300"})


def json_page(data: Any) -> JSONResponse:
    """JSON with the console's headers (a fragment's data for scripts)."""
    return JSONResponse(data, headers=HEADERS)
