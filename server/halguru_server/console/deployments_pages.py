"""Deployments (``/admin/deployments``, ``agents:publish``): every published version of every agent, the one
served marked with "Unpublish", and "Serve" and "Delete" on the others: the same ``deployments.unpublish``,
``rollback`` and ``delete_version`` as ``halguru deployments unpublish|rollback|delete`` and the /v1/deployments
routes, audited alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from halguru.store.records import DeploymentRecord
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
    return await _act(request, "agent.rollback", deployments.rollback, state, caller, agent,
                      "{agent} v{version} is served from the next request on")


@router.post("/deployments/{agent}/unpublish")
async def unpublish_page(request: Request, state: State, caller: Publisher,
                         agent: Annotated[str, Path(max_length=200)]) -> Response:
    """Stop serving the agent (as `halguru deployments unpublish`); back to the page."""
    await pages.form(request)  # a posted form, as every console action
    try:
        record = await asyncio.to_thread(deployments.unpublish, state, caller, agent)
    except ApiError as exc:
        return _back(caller, "error", exc.message)
    audit.record(request, "agent.unpublish", agent, {"version": record["version"], "sha256": record["sha256"]})
    return _back(caller, "notice", f"{agent} is no longer served (it served v{record['version']})")


@router.post("/deployments/{agent}/delete")
async def delete_page(request: Request, state: State, caller: Publisher,
                      agent: Annotated[str, Path(max_length=200)]) -> Response:
    """Delete the form's version of the agent (as `halguru deployments delete`); back to the page."""
    return await _act(request, "agent.delete_version", deployments.delete_version, state, caller, agent,
                      "{agent} v{version} is deleted")


Act = Callable[[ServerState, Principal, str, int], DeploymentRecord]


async def _act(request: Request, action: str, act: Act, state: ServerState, caller: Principal, agent: str,
               said: str) -> Response:
    """Do ``act`` to the form's version of ``agent`` (as the CLI and /v1 do), audit it as ``action``, and go back
    to the page saying ``said`` (or why not)."""
    version = (await pages.form(request)).get("version", "")
    if not (version.isascii() and version.isdigit() and len(version) <= 18):  # '²'.isdigit(), and int() limits
        return _back(caller, "error", "give a version number")
    try:
        record = await asyncio.to_thread(act, state, caller, agent, int(version))
    except ApiError as exc:
        return _back(caller, "error", exc.message)
    audit.record(request, action, agent, {"version": record["version"], "sha256": record["sha256"]})
    return _back(caller, "notice", said.format(agent=agent, version=record["version"]))


def _back(caller: Principal, kind: str, said: str) -> Response:
    return shell.back(f"/admin/deployments?{urlencode({kind: said})}", caller)
