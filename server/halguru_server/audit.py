"""Serve mode's audit log: ``record`` for routes (the caller and client address taken from the request) and
the admin's ``/v1/audit`` (the log, newest first, with filters and a cursor) and ``POST /v1/audit/verify``.

The chain itself is the store's (``halguru.store.sql_audit``); entries go in through ``halguru.audit`` so
that the CLI and serve record alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from halguru import audit
from halguru.store.records import AuditRecord
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import responses
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, client_address, get_state, resolve, state_of

router = APIRouter(prefix="/v1", tags=["audit"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Auditor = Annotated[Principal, Depends(require("audit:read"))]
State = Annotated[ServerState, Depends(state_of)]
PAGE = 100


def actor_of(principal: Principal) -> str:
    """The principal as the log names it: ``user:<id>`` (a user and their keys), ``key:<id>``, ``dev``, or
    ``anon:<address>`` for a caller not signed in (a failed sign-in)."""
    if principal.dev:
        return "dev"
    return principal.owner or f"anon:{principal.client}"


def record(request: Request, action: str, target: str = "", details: Mapping[str, Any] | None = None, *,
           actor: str | None = None) -> None:
    """Record ``action`` by this request's caller (or ``actor``: a sign-in knows its user before the request
    does), with the client's address (behind trusted proxies, the forwarded one)."""
    state = get_state(request)
    address = client_address(request, state.settings.trusted_proxies)
    audit.record(state.store, actor or actor_of(resolve(request)), action, target, details, address)


class EntryOut(BaseModel):
    seq: int
    time: float
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    address: str | None
    alg: str
    prev_hash: str
    hash: str


class EntryList(BaseModel):
    data: list[EntryOut]
    next: int | None = Field(description="pass as before= for the next (older) page; null: no more")


class VerifyOut(BaseModel):
    ok: bool
    entries: int = Field(description="entries checked and found intact")
    seq: int | None = Field(description="the first broken entry")
    reason: str | None
    head: str = Field(description="the hash of the last intact entry: record it elsewhere to catch truncation")
    message: str


def _out(entry: AuditRecord) -> EntryOut:
    return EntryOut(**entry)


@router.get("/audit", response_model=EntryList)
def list_audit(state: State, caller: Auditor,
               action: Annotated[str | None, Query(max_length=100, description="a name, or a prefix "
                                                   "ending in '.' (auth.)")] = None,
               actor: Annotated[str | None, Query(max_length=200, description="user:<id>, key:<id>, "
                                                  "cli:<user>, dev")] = None,
               since: Annotated[float | None, Query(description="epoch seconds: entries at or after it")] = None,
               until: Annotated[float | None, Query(description="epoch seconds: entries before it")] = None,
               before: Annotated[int | None, Query(ge=1, le=2**62, description="the cursor: entries older "
                                                   "than this seq")] = None,
               limit: Annotated[int, Query(ge=1, le=PAGE * 10)] = PAGE) -> EntryList:
    """The audit log, newest first."""
    rows = state.store.list_audit(limit + 1, action=action, actor=actor, since=since, until=until, before=before)
    page = rows[:limit]
    return EntryList(data=[_out(r) for r in page], next=page[-1]["seq"] if len(rows) > limit else None)


@router.post("/audit/verify", response_model=VerifyOut)
def verify_audit(state: State, caller: Auditor) -> VerifyOut:
    """Walk the whole hash chain: intact, or the first broken entry and why."""
    check, message = audit.verify(state.store)
    return VerifyOut(ok=check["ok"], entries=check["entries"], seq=check["seq"], reason=check["reason"],
                     head=check["head"], message=message)
