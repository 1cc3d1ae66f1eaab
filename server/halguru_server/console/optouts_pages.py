"""Opt-outs (``/admin/opt-outs``, ``conversations:read_all``): the senders who told a channel to stop (SMS STOP,
or a reply the provider refused as opted out), newest first, filtered by channel and agent; "Clear" lets the agent
answer one again (``settings:manage``: admins). The JSON twins ``GET /v1/channels/opt-outs`` and ``POST
/v1/channels/opt-outs/clear`` and `halguru channels opt-outs|clear-opt-out` go through the same
``halguru.channels.opt_outs``, audited alike (``opt_out.clear``)."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from halguru.errors import HalguruError
from halguru.jobs import opt_outs
from halguru.store.records import OptOutRecord
from halguru_server.audit import actor_of
from halguru_server.bodies import GuardedRoute
from halguru_server.console import shell
from halguru_server.errors import ApiError, responses
from halguru_server.identity import pages
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, client_address, state_of

router = shell.page_router()
api = APIRouter(prefix="/v1", tags=["console"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Reader = Annotated[Principal, Depends(require("conversations:read_all"))]
Clearer = Annotated[Principal, Depends(require("settings:manage"))]
State = Annotated[ServerState, Depends(state_of)]
Filter = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=opt_outs.MAX_LISTED)]


class OptOutOut(BaseModel):
    channel: str
    agent: str
    ours: str = Field(description="the number of ours they wrote to (opt-outs are per number)")
    sender: str
    reason: str = Field(description="what said so: the keyword (STOP), or the provider's refusal")
    since: float


class OptOutList(BaseModel):
    data: list[OptOutOut]


class ClearIn(BaseModel):
    channel: str = Field("twilio", max_length=100)
    agent: str = Field(max_length=200)
    sender: str = Field(max_length=300)
    number: str | None = Field(None, max_length=300, description="only from this number of ours (default: all)")


class ClearOut(BaseModel):
    cleared: list[OptOutOut]
    note: str | None = Field(description="what the provider still does on its side")


def _listed(state: ServerState, caller: Principal, channel: str | None, agent: str | None,
            limit: int) -> list[OptOutRecord]:
    """The opt-outs of the agents the caller may see (a key limited to some agents sees theirs)."""
    rows = opt_outs.list_opt_outs(state.store, channel, agent, limit)
    return [r for r in rows if caller.key is None or caller.key.allows(r["agent"])]


def _clear(request: Request, state: ServerState, caller: Principal, body: ClearIn) -> ClearOut:
    """Clear, audited with the caller and their address; 404 for nothing to clear (or an agent not theirs)."""
    if caller.key is not None and not caller.key.allows(body.agent):
        raise ApiError(404, f"{body.sender} has not opted out of agent {body.agent}'s {body.channel} messages")
    address = client_address(request, state.settings.trusted_proxies)
    try:
        cleared = opt_outs.clear_opt_out(state.store, body.channel, body.agent, body.sender, body.number,
                                         actor=actor_of(caller), address=address)
    except HalguruError as exc:
        raise ApiError(404, str(exc)) from None
    return ClearOut(cleared=[OptOutOut(**r) for r in cleared], note=opt_outs.PROVIDER_NOTE.get(body.channel))


@api.get("/channels/opt-outs", response_model=OptOutList)
def list_json(state: State, caller: Reader, channel: Filter = None, agent: Filter = None,
              limit: Limit = 100) -> OptOutList:
    """The senders who opted out, newest first (as `halguru channels opt-outs`)."""
    return OptOutList(data=[OptOutOut(**r) for r in _listed(state, caller, channel, agent, limit)])


@api.post("/channels/opt-outs/clear", response_model=ClearOut, responses=responses(404))
def clear_json(body: ClearIn, request: Request, state: State, caller: Clearer) -> ClearOut:
    """Let the agent answer the sender again (as `halguru channels clear-opt-out`); audited."""
    return _clear(request, state, caller, body)


@router.get("/opt-outs")
def opt_outs_page(request: Request, state: State, caller: Reader, channel: Filter = None, agent: Filter = None,
                  notice: Annotated[str | None, Query(max_length=300)] = None,
                  error: Annotated[str | None, Query(max_length=300)] = None) -> HTMLResponse:
    """The opt-outs, newest first, with "Clear" for an admin."""
    rows = _listed(state, caller, channel, agent, opt_outs.MAX_LISTED)
    fields = [{"name": "channel", "label": "Channel", "value": channel},
              {"name": "agent", "label": "Agent", "value": agent}]
    shown = urlencode({k: v for k, v in (("channel", channel), ("agent", agent)) if v})
    return shell.render(request, caller, "opt_outs.html", "Opt-outs", rows=rows, fields=fields, notice=notice,
                        error=error, here=f"/admin/opt-outs?{shown}" if shown else "/admin/opt-outs",
                        can_clear=caller.can("settings:manage"))


@router.post("/opt-outs/clear")
async def clear_page(request: Request, state: State, caller: Clearer) -> Response:
    """Clear the form's opt-out; back to the page (its filters kept) saying what happened."""
    form = await pages.form(request)
    back = form.get("back", "")
    if not (back == "/admin/opt-outs" or back.startswith("/admin/opt-outs?")):  # only this page, never another
        back = "/admin/opt-outs"
    try:
        body = ClearIn(channel=form.get("channel", ""), agent=form.get("agent", ""), sender=form.get("sender", ""),
                       number=form.get("number") or None)
        done = await asyncio.to_thread(_clear, request, state, caller, body)
    except (ApiError, ValueError) as exc:
        said = {"error": (exc.message if isinstance(exc, ApiError) else "the form is incomplete")[:300]}
    else:
        note = f" {done.note}." if done.note else ""
        said = {"notice": f"{body.sender} may be answered by {body.agent} again.{note}"[:300]}
    base, _, query = back.partition("?")
    kept = [part for part in query.split("&") if part.startswith(("channel=", "agent="))]
    return shell.back(f"{base}?{'&'.join([*kept, urlencode(said)])}", caller)
