"""The web chat as an installable app (manifest, service worker, offline page) and as a widget for other sites.

- ``/chat/manifest.webmanifest``, ``/chat/sw.js`` (scope ``/chat/``: it caches the shell and ``/chat/static/*``,
  never API answers) and ``/chat/offline`` (what the service worker shows when the server is out of reach);
- ``/chat/widget.js``: one ``<script src=".../chat/widget.js" data-agent="NAME">`` puts a chat bubble on a page;
  the chat runs in an iframe of ``/chat/embed/{agent}`` from this server, so the host page cannot read it;
- ``/chat/embed/{agent}``: the chat page whose ``frame-ancestors`` lists exactly the agent's
  ``metadata.embed_origins``; an agent without them is not embeddable (404); every other page keeps
  ``frame-ancestors 'none'``.
"""

from __future__ import annotations

import hashlib
import html
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import FileResponse, HTMLResponse, Response

from halguru_server import web
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError
from halguru_server.identity.guards import public
from halguru_server.state import ServerState, state_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(public)], route_class=GuardedRoute)
State = Annotated[ServerState, Depends(state_of)]
REVALIDATE = {"Cache-Control": "no-cache"}  # always asked again (ETag), so a release shows at once


@router.get("/chat/manifest.webmanifest")
def manifest() -> FileResponse:
    return FileResponse(web.STATIC / "manifest.webmanifest", media_type="application/manifest+json",
                        headers={**web.SECURITY, **REVALIDATE})


@router.get("/chat/sw.js")
def service_worker() -> Response:
    """The service worker, its cache named after the static files' hash (a release replaces the old cache)."""
    return Response(_service_worker(), media_type="text/javascript",
                    headers={**web.SECURITY, **REVALIDATE, "Service-Worker-Allowed": "/chat/"})


@router.get("/chat/offline")
def offline() -> FileResponse:
    return FileResponse(web.STATIC / "offline.html", headers={**web.SECURITY, **REVALIDATE})


@router.get("/chat/widget.js")
def widget() -> FileResponse:
    """The embed script: host pages load it cross-origin (a plain script tag, no CORS needed)."""
    return FileResponse(web.STATIC / "widget.js", media_type="text/javascript",
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"})


@router.get("/chat/embed/{agent}")
def embed(agent: Annotated[str, Path(max_length=100)], state: State) -> HTMLResponse:
    """The chat of one agent, to be framed only by that agent's ``embed_origins``."""
    served = state.agents.get(agent)
    if served is None or not served.embed_origins:
        raise ApiError(404, f"agent {agent!r} is not embeddable here")
    ancestors = " ".join(served.embed_origins)
    csp = web.SECURITY["Content-Security-Policy"].replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")
    page = _index().replace("<body>", f'<body class="embed" data-embed="{html.escape(agent)}">', 1)
    return HTMLResponse(page, headers={**web.SECURITY, "Content-Security-Policy": csp, "Cache-Control": "no-store"})


@lru_cache(maxsize=1)
def _index() -> str:
    return (web.STATIC / "index.html").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _service_worker() -> str:
    digest = hashlib.sha256()
    for path in sorted(web.STATIC.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return (web.STATIC / "sw.js").read_text(encoding="utf-8").replace("__VERSION__", digest.hexdigest()[:16])
