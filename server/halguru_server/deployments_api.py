"""/v1/deployments: publish an agent bundle (``halguru publish``), list the versions, roll back (or forward),
unpublish, delete a version.

Permission ``agents:publish`` (developers and admins); a key limited to some agents publishes only those.
The logic is ``halguru_server.deployments``; publish, rollback, unpublish and delete go to the audit log.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from halguru.api_schemas import ActivateIn, DeploymentList, DeploymentOut
from halguru.store.records import DeploymentRecord
from halguru_server import audit, deployments
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.ops import model_label
from halguru_server.state import Principal, ServerState, state_of

router = APIRouter(prefix="/v1", tags=["deployments"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Publisher = Annotated[Principal, Depends(require("agents:publish"))]
State = Annotated[ServerState, Depends(state_of)]
AgentName = Annotated[str, Path(max_length=deployments.MAX_NAME)]
BUNDLE = "application/gzip"


@router.post("/deployments", response_model=DeploymentOut, status_code=201, responses=responses(400, 409, 413, 415),
             openapi_extra={"requestBody": {"required": True, "content": {
                 BUNDLE: {"schema": {"type": "string", "format": "binary"}}}}})
async def publish(request: Request, caller: Publisher, state: State) -> DeploymentOut:
    """Publish a bundle (a tar.gz made by `halguru publish`): checked, validated like `halguru validate`,
    stored as the agent's next version and served from the next request on. Requests already running finish
    on the version they started with. The active version's exact bundle again makes no new version."""
    started = time.perf_counter()
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind not in (BUNDLE, "application/octet-stream"):
        raise ApiError(415, f"send the bundle as {BUNDLE} (`halguru publish PATH` makes and sends it)",
                       "unsupported_media_type")
    data = await request.body()
    if not data:
        raise ApiError(400, "empty body: send the bundle (`halguru publish PATH`)", "invalid_bundle")
    record, unchanged = await asyncio.to_thread(deployments.publish, state, caller, data)
    if not unchanged:
        audit.record(request, "agent.publish", record["agent"], {"version": record["version"],
                                                                 "sha256": record["sha256"]})
    return _out(record, unchanged=unchanged, live_ms=deployments.now_ms(started))


@router.get("/deployments", response_model=DeploymentList)
def list_deployments(caller: Publisher, state: State,
                     agent: Annotated[str | None, Query(max_length=deployments.MAX_NAME)] = None) -> DeploymentList:
    """Every published version (of ``agent``), newest first per agent; ``active`` marks the one served."""
    rows = state.store.list_deployments(agent)
    if caller.key is not None:
        rows = [r for r in rows if caller.key.allows(r["agent"])]
    names: dict[str | None, str | None] = {None: None}
    for owner in {r["published_by"] for r in rows} - {None}:
        user = state.store.get_user(owner[5:]) if owner and owner.startswith("user:") else None
        names[owner] = (user["email"] or user["name"]) if user else owner
    return DeploymentList(data=[_out(r, publisher=names[r["published_by"]]) for r in rows])


@router.post("/deployments/{agent}/rollback", response_model=DeploymentOut, responses=responses(404, 409))
async def rollback(request: Request, caller: Publisher, state: State, agent: AgentName,
                   body: Annotated[ActivateIn, Body()]) -> DeploymentOut:
    """Serve an earlier (or later) stored version of the agent from the next request on."""
    started = time.perf_counter()
    record = await asyncio.to_thread(deployments.rollback, state, caller, agent, body.version)
    audit.record(request, "agent.rollback", agent, {"version": body.version, "sha256": record["sha256"]})
    return _out(record, live_ms=deployments.now_ms(started))


@router.post("/deployments/{agent}/unpublish", response_model=DeploymentOut, responses=responses(404, 409))
async def unpublish(request: Request, caller: Publisher, state: State, agent: AgentName) -> DeploymentOut:
    """Stop serving the agent from the next request on, on every replica (within its poll): its API, chat,
    channels and schedules answer as for an agent that does not exist. Running requests finish. Its versions stay
    stored: `rollback` serves one again; `DELETE .../versions/N` removes them. Returns the version taken down."""
    record = await asyncio.to_thread(deployments.unpublish, state, caller, agent)
    audit.record(request, "agent.unpublish", agent, {"version": record["version"], "sha256": record["sha256"]})
    return _out(record)


@router.delete("/deployments/{agent}/versions/{version}", response_model=DeploymentOut,
               responses=responses(404, 409))
async def delete_version(request: Request, caller: Publisher, state: State, agent: AgentName,
                         version: Annotated[int, Path(ge=1)]) -> DeploymentOut:
    """Delete a stored version with its bundle (a secret published by mistake, a version never to serve again).
    Not the one served (roll back first), nor one a run paused for approval waits on. Old versions also go by
    themselves: a publish keeps the newest ``deployments_keep`` (20)."""
    record = await asyncio.to_thread(deployments.delete_version, state, caller, agent, version)
    audit.record(request, "agent.delete_version", agent, {"version": version, "sha256": record["sha256"]})
    return _out(record)


def _out(record: DeploymentRecord, **extra: Any) -> DeploymentOut:
    """A version as the API shows it: its model without the server's folders (``scripted:answers.yaml``, not
    where the server unpacked the bundle), as the ops endpoints name models."""
    manifest = record["manifest"]
    if isinstance(manifest.get("model"), str):
        manifest = {**manifest, "model": model_label(manifest["model"])}
    return DeploymentOut(**{**record, "manifest": manifest}, **extra)
