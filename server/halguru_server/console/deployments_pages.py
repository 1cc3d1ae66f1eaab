"""Deployments (``/admin/deployments``, ``agents:publish``): every published version of every agent, the one
served marked, and "Serve this version" on the others: the same ``deployments.rollback`` as
``halguru deployments rollback`` and ``POST /v1/deployments/{agent}/rollback``, audited alike."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from halguru_server import audit, deployments
from halguru_server.console import shell
from halguru_server.errors import ApiError
from halguru_server.identity import pages
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
Publisher = Annotated[Principal, Depends(require("agents:publish"))]
State = Annotated[ServerState, Depends(state_of)]


@router.get("/deployments")
def deployments_page(request: Request, state: State, caller: Publisher,
                     notice: Annotated[str | None, Query(max_length=300)] = None,
                     error: Annotated[str | None, Query(max_length=300)] = None) -> HTMLResponse:
    """Published versions, newest first per agent."""
    rows = [d for d in state.store.list_deployments()
            if caller.key is None or caller.key.allows(d["agent"])]
    return shell.render(request, caller, "deployments.html", "Deployments", rows=rows, notice=notice, error=error)


@router.post("/deployments/{agent}/rollback")
async def rollback_page(request: Request, state: State, caller: Publisher,
                        agent: Annotated[str, Path(max_length=200)]) -> Response:
    """Serve the form's version of the agent; back to the page saying what happened."""
    form = await pages.form(request)
    version = form.get("version", "")
    if not (version.isascii() and version.isdigit() and len(version) <= 18):  # '²'.isdigit(), and int() limits
        return shell.back(f"/admin/deployments?{urlencode({'error': 'give a version number'})}")
    try:
        record = await asyncio.to_thread(deployments.rollback, state, caller, agent, int(version))
    except ApiError as exc:
        return shell.back(f"/admin/deployments?{urlencode({'error': exc.message})}")
    audit.record(request, "agent.rollback", agent, {"version": record["version"], "sha256": record["sha256"]})
    said = f"{agent} v{record['version']} is served from the next request on"
    return shell.back(f"/admin/deployments?{urlencode({'notice': said})}")
