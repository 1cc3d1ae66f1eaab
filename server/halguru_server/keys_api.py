"""/v1/keys: a signed-in user's own API keys (create, list, revoke); an admin (``keys:all``) sees everyone's.

A key always belongs to the user who creates it here and carries at most their permissions. A caller that is
itself a key can only make, and revoke, keys no wider than it (itself included): its agents at most, its scope
at most, and a key that expires no later than it does (a stolen narrow key must not mint a broad, eternal one,
nor revoke the broad keys its user relies on).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from halguru.errors import HalguruError
from halguru_server import audit, keys
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.keys import MAX_NAME, ApiKey, create_key, list_keys, parse_duration
from halguru_server.state import Principal, ServerState, state_of

router = APIRouter(prefix="/v1", tags=["keys"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("keys:own"))]
# revoking a key is what stops its abuse: not refused while the key's own flood holds its owner's places in flight
Revoker = Annotated[Principal, Depends(require("keys:own", capped=False))]
State = Annotated[ServerState, Depends(state_of)]


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=MAX_NAME, description="who or what uses it")
    agents: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=100,
                                                                description="the agents it may use (empty: all)")
    expires: str | None = Field(default=None, max_length=20, description="lifetime such as 30d, 12h (none: never)")
    admin: bool = Field(default=False, description="all of your permissions, not at most a developer's")


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    agents: list[str]
    created: float
    expires: float | None
    revoked: float | None
    last_used: float | None
    scope: str
    user_id: str | None
    state: str = Field(description="active, expired or revoked")


class NewKeyOut(KeyOut):
    secret: str = Field(description="the key itself: shown this once, stored only as a hash")


class KeyList(BaseModel):
    data: list[KeyOut]


def _out(key: ApiKey) -> KeyOut:
    return KeyOut(id=key.id, name=key.name, prefix=key.prefix, agents=list(key.agents), created=key.created,
                  expires=key.expires, revoked=key.revoked, last_used=key.last_used, scope=key.scope,
                  user_id=key.user_id, state=key.state)


def _user_id(caller: Principal) -> str:
    if caller.user is None:
        raise ApiError(404, "no user: keys here are a user's own; sign in, or use a key that belongs to a user "
                            "(`halguru keys create NAME --user EMAIL`)")
    return caller.user["id"]


def _no_wider(caller: Principal, agents: list[str], admin: bool, expires: float | None, doing: str) -> None:
    """A key may only mint (or revoke) keys within its own reach: its agents, its scope, expiring no later."""
    key = caller.key
    if key is None:
        return
    if key.agents and (not agents or not set(agents) <= set(key.agents)):
        raise ApiError(403, f"this key may only {doing} keys for its own agents: {', '.join(key.agents)}",
                       "forbidden")
    if admin and key.scope != "admin":
        raise ApiError(403, f"this key may not {doing} a key with wider permissions than its own", "forbidden")
    if key.expires is not None and (expires is None or expires > key.expires):
        raise ApiError(403, f"this key expires, so the keys it may {doing} must expire no later", "forbidden")


@router.post("/keys", response_model=NewKeyOut, status_code=201, responses=responses(400, 404, 409))
def create(body: KeyIn, request: Request, state: State, caller: Caller) -> NewKeyOut:
    """A new key of yours; its secret is in this answer only."""
    user_id = _user_id(caller)
    unknown = sorted(set(body.agents) - set(state.agents))
    if unknown:
        raise ApiError(404, f"no agent {unknown[0]!r}; GET /v1/agents lists them")  # as everywhere an agent is named
    if body.admin and caller.role not in ("admin", "operator"):
        raise ApiError(403, f"your role ({caller.role}) gets keys of a developer's reach at most; leave admin "
                            "off", "forbidden")
    try:
        expires_in = parse_duration(body.expires) if body.expires else None
    except HalguruError as exc:
        raise ApiError(400, str(exc)) from None
    _no_wider(caller, body.agents, body.admin, time.time() + expires_in if expires_in is not None else None,
              "create")
    active = sum(k.state == "active" for k in list_keys(state.store, user_id))
    if active >= keys.MAX_ACTIVE_PER_USER:
        raise ApiError(409, f"you have {active} active keys, the most one user may hold; revoke one you no longer "
                            "use first (DELETE /v1/keys/ID)", "too_many_keys")
    key, secret = create_key(state.store, body.name, body.agents, expires_in, "admin" if body.admin else "user",
                             user_id=user_id)
    audit.record(request, "key.create", key.id, {"name": key.name, "scope": key.scope, "user_id": user_id})
    return NewKeyOut(**_out(key).model_dump(), secret=secret)


@router.get("/keys", response_model=KeyList, responses=responses(404))
def listing(state: State, caller: Caller,
            user: Annotated[str | None, Query(max_length=100, description="a user's id (keys:all)")] = None,
            every: Annotated[bool, Query(alias="all", description="every user's keys (keys:all)")] = False,
            ) -> KeyList:
    """Your keys (an admin: a user's with ?user=, or every key with ?all=true)."""
    if (user or every) and not caller.sees_all("keys"):
        raise ApiError(403, "seeing other users' keys takes 'keys:all'", "forbidden")
    keys = list_keys(state.store) if every else list_keys(state.store, user or _user_id(caller))
    return KeyList(data=[_out(k) for k in keys])


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=responses(404))
def revoke(key_id: Annotated[str, Path(max_length=20)], request: Request, state: State,
           caller: Revoker) -> KeyOut:
    """Revoke a key of yours (an admin: anyone's); other keys answer 404, like keys that do not exist."""
    found = next((k for k in list_keys(state.store) if k.id == key_id), None)
    mine = found is not None and caller.user is not None and found.user_id == caller.user["id"]
    if found is None or not (mine or caller.sees_all("keys")):
        raise ApiError(404, f"no key {key_id!r}")
    if found.id != (caller.key.id if caller.key else None):  # a stolen narrow key must not cut off broader ones
        _no_wider(caller, list(found.agents), found.scope == "admin", found.expires, "revoke")
    if found.revoked is None:
        state.store.revoke_keys([found.id])
        audit.record(request, "key.revoke", found.id, {"name": found.name, "user_id": found.user_id})
        found = next(k for k in list_keys(state.store) if k.id == key_id)
    return _out(found)
