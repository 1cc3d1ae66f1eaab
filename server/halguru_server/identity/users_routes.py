"""Users over HTTP (docs/identity.md): an admin (``users:manage``) lists users, changes roles, disables and
enables them, unlocks them and resets their second factor, as `halguru users` does from the shell. (Keys: ``keys_api``.)
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from halguru.store.records import UserRecord
from halguru_server import audit, cursors, service
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity import accounts, session_routes
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = APIRouter(prefix="/v1", tags=["users"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Admin = Annotated[Principal, Depends(require("users:manage"))]
# disabling a user stops their abuse: never refused for the admin's own requests in flight (inflight.py)
Urgent = Annotated[Principal, Depends(require("users:manage", capped=False))]
State = Annotated[ServerState, Depends(state_of)]
UserId = Annotated[str, Path(max_length=40)]


class UserOut(session_routes.UserOut):
    """A user as /auth/me shows them, with what an admin also sees."""

    disabled: bool
    created: float
    last_login: float | None
    locked_until: float | None  # too many failed sign-ins: refused until then (POST .../unlock ends it)


class UserList(BaseModel):
    data: list[UserOut]
    next_cursor: str | None = Field(description="the next page's cursor; null: this was the last page")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["admin", "operator", "developer", "user"] | None = None
    disabled: bool | None = None


def _user_out(user: UserRecord) -> UserOut:
    return UserOut.model_validate(dict(user))


def _user(state: ServerState, user_id: str) -> UserRecord:
    user = state.store.get_user(user_id)
    if user is None:
        raise ApiError(404, f"no user {user_id!r}; GET /v1/users lists them")
    return user


def page(state: ServerState, q: str | None, limit: int, cursor: str | None) -> tuple[list[UserRecord], str | None]:
    """A page of users, oldest first, whose email or name holds ``q`` (any case); and the next page's cursor."""
    after = cursors.user_after(cursor)
    if q:
        service.check_text(q, "q")
    rows = state.store.list_users(limit + 1, after=after, text=q or None)
    return rows[:limit], cursors.user_cursor(rows[limit - 1]) if len(rows) > limit else None


@router.get("/users", response_model=UserList, responses=responses(400))
def list_users(state: State, caller: Admin,
               q: Annotated[str | None, Query(max_length=200, description="text in their email or name, any case")]
               = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 50,
               cursor: Annotated[str | None, Query(max_length=200)] = None) -> UserList:
    """Users, oldest first, ``limit`` per page; follow ``next_cursor`` for more. The cursor marks the last user
    shown, so users created meanwhile never repeat or shift the rest (they come at the end)."""
    rows, next_cursor = page(state, q, limit, cursor)
    return UserList(data=[_user_out(u) for u in rows], next_cursor=next_cursor)


@router.patch("/users/{user_id}", response_model=UserOut, responses=responses(400, 404))
def change_user(user_id: UserId, body: UserPatch, request: Request, state: State, caller: Urgent) -> UserOut:
    """Change a user's role, or disable (signed out everywhere, keys stop working) or enable them. An admin
    cannot demote or disable themselves, and nobody the last enabled admin (so a server always keeps one)."""
    user = _user(state, user_id)
    if caller.user is not None and user_id == caller.user["id"] and (
            body.disabled or (body.role is not None and body.role != "admin")):
        raise ApiError(400, "you cannot demote or disable yourself; another admin can")
    if body.role is not None:
        user = accounts.set_role(state.store, user_id, body.role)
        audit.record(request, "user.role", user_id, {"role": body.role})
    if body.disabled is not None:
        user = accounts.disable_user(state.store, user_id, disabled=body.disabled)
        audit.record(request, "user.disable" if body.disabled else "user.enable", user_id, {"disabled": body.disabled})
    return _user_out(user)


@router.post("/users/{user_id}/unlock", response_model=UserOut, responses=responses(404))
def unlock(user_id: UserId, request: Request, state: State, caller: Admin) -> UserOut:
    """End the user's sign-in lock (too many failed sign-ins) and its count of failures."""
    _user(state, user_id)
    audit.record(request, "user.unlock", user_id)
    return _user_out(accounts.unlock(state.store, user_id))


@router.post("/users/{user_id}/reset-2fa", response_model=UserOut, responses=responses(404))
def reset_2fa(user_id: UserId, request: Request, state: State, caller: Admin) -> UserOut:
    """Remove the user's authenticator and recovery codes (a lost phone); they are signed out."""
    _user(state, user_id)
    audit.record(request, "user.reset_2fa", user_id)
    return _user_out(accounts.reset_2fa(state.store, user_id))
