"""The admin console (issue 16): server-rendered pages under ``/admin`` for admins and operators (read-only
views for developers where they make sense), each backed by a JSON twin under ``/v1`` that goes through the
same library functions as the CLI.

How a page is built (``shell``):

- a router from ``shell.page_router()``: its routes turn a refused guard into a sign-in redirect (401) or a
  "not allowed" page (403) for browsers, and keep the JSON error for ``Accept: application/json``;
- every route still declares exactly one guard, ``Depends(require(permission))`` (docs/identity.md);
- ``shell.render(request, caller, "page.html", title, **context)`` renders a template that extends
  ``console_base.html`` (navigation filtered by the caller's permissions, the session's CSRF token as ``csrf``)
  and answers it with the console's security headers (CSP: scripts from this server only, no inline script);
- ``_ui.html`` has the shared macros: ``table``, ``filters``, ``pager``, ``cards``, ``action`` (a POST form
  with the CSRF token, optionally confirmed by the browser), ``badge``;
- live parts: an element with ``data-live="/admin/...fragment"`` (and ``data-every`` seconds) is refreshed from
  that URL's HTML by ``static/console.js`` (paused while the tab is hidden); fragments are ordinary guarded
  routes rendering a template without the base layout (``shell.fragment``);
- static files: ``static/`` served at ``/admin/assets/<name>`` (an allow-list of names, public).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Wire the console: its assets, then every module of this package named ``*_pages`` that has a
    ``router`` (pages) or ``api`` (its ``/v1`` twins): a new section is a new module, app.py is not touched."""
    from halguru_server.console import shell

    app.include_router(shell.assets)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.endswith("_pages"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            for name in ("router", "api"):
                if (router := getattr(module, name, None)) is not None:
                    app.include_router(router)


async def keep_sampling(app: FastAPI, state: Any) -> None:
    """The status page's history: a sample of the components every 15 s, until cancelled (serve's lifespan)."""
    from halguru_server.console import status_pages

    await status_pages.keep_sampling(app, state)
