"""Status (``/admin/status``, ``metrics:read``): the components ``/status`` checks (store, models, server,
errors, runs, jobs/worker, queue) now, and their history.

History is a ring buffer per replica (in this process's memory, not the store): serve samples ``ops.health``
every ``EVERY_S`` seconds (``keep_sampling``, started with the app), and a console page asking when the last
sample is older than that takes one; up to ``KEEP`` samples (a replica restarting starts empty).
``GET /v1/status/history`` is the same as JSON. Samples hold the names ``/status`` gives a caller who may read
metrics (a key-only agents' model by its name, not ``private-N``): both pages take ``metrics:read``, and the
sampler, which has no caller, must not record the anonymous view for them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from halguru_server import ops
from halguru_server.bodies import GuardedRoute
from halguru_server.console import shell
from halguru_server.errors import responses
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
api = APIRouter(prefix="/v1", tags=["console"], responses=responses(401, 403), route_class=GuardedRoute)
Viewer = Annotated[Principal, Depends(require("metrics:read"))]
State = Annotated[ServerState, Depends(state_of)]
EVERY_S = 15.0
KEEP = 480  # two hours at one sample per 15 s
_lock = threading.Lock()
log = logging.getLogger("halguru.server")


def history(app: Any) -> deque[dict[str, Any]]:
    """This app's ring buffer of samples ``{"at", "components": {name: {"ok", "detail"}}}``."""
    found = getattr(app.state, "console_status", None)
    if found is None:
        found = app.state.console_status = deque(maxlen=KEEP)
    return found


async def keep_sampling(app: Any, state: ServerState) -> None:
    """Sample every ``EVERY_S`` seconds until cancelled (serve's lifespan runs it); a failed sample is logged."""
    while True:
        try:
            await asyncio.to_thread(sample, app, state)
        except Exception:
            log.exception("status sample failed")
        await asyncio.sleep(EVERY_S)


def sample(app: Any, state: ServerState, force: bool = False) -> deque[dict[str, Any]]:
    """Take a sample unless the last is recent; the buffer."""
    samples = history(app)
    with _lock:
        if force or not samples or time.time() - samples[-1]["at"] >= EVERY_S:
            parts = ops.health(state, named=True)  # served only to metrics:read callers (Viewer)
            samples.append({"at": time.time(), "components": {n: {"ok": bool(p["ok"]), "detail": str(p["detail"])}
                                                              for n, p in parts.items()}})
    return samples


def strip(states: list[bool | None], label: str) -> Markup:
    """One component's history as a row of cells (green ok, red not, grey not sampled then)."""
    width = 4
    cells = "".join(f'<rect x="{i * width}" y="0" width="{width - 1}" height="14" class="{klass}"/>'
                    for i, s in enumerate(states)
                    for klass in ("s3" if s else "s2" if s is False else "blank",))
    return Markup(f'<svg viewBox="0 0 {max(1, len(states)) * width} 14" preserveAspectRatio="none" class="strip" '
                  f'role="img" aria-label="{escape(label)}">{cells}</svg>')


def _view(samples: deque[dict[str, Any]]) -> dict[str, Any]:
    last = samples[-1]["components"]
    rows = []
    for name, now in last.items():
        states = [s["components"].get(name, {}).get("ok") for s in samples]
        bad = sum(1 for s in states if s is False)
        changes = [(shell.stamp(s["at"]), s["components"][name]["detail"]) for i, s in enumerate(samples)
                   if name in s["components"] and i and samples[i - 1]["components"].get(name, {}).get("ok")
                   != s["components"][name]["ok"]]
        rows.append({"name": name, "ok": now["ok"], "detail": now["detail"], "bad": bad, "changes": changes[-5:],
                     "strip": strip(states, f"{name}: {len(states) - bad} of {len(states)} samples ok")})
    return {"rows": rows, "since": samples[0]["at"], "count": len(samples)}


@router.get("/status")
def status_page(request: Request, state: State, caller: Viewer) -> HTMLResponse:
    """Each component now, with its history on this replica."""
    samples = sample(request.app, state)
    return shell.render(request, caller, "status.html", "Status", replica=state.settings.replica_id or "this replica",
                        every=int(EVERY_S), **_view(samples))


@api.get("/status/history")
def status_json(request: Request, state: State, caller: Viewer) -> dict[str, Any]:
    """This replica's samples of the components, oldest first (one per 15 s)."""
    samples = sample(request.app, state)
    return {"replica": state.settings.replica_id, "every_s": EVERY_S, "samples": list(samples)}
