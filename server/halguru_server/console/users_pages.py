"""Users (``/admin/users``, ``users:manage``): 50 users a page, oldest first, searchable by email or name, each
with their role (changed here), state, 2FA and last sign-in; disable/enable, 2FA reset, invitations (a
single-use link shown once), and per user their API keys (revoke) and live sessions (revoke). The changes go
through ``/v1/users``' own functions (the same rule: an admin cannot demote or disable themselves) and
``/v1/keys``' revoke, so each is audited alike.

JSON twins beyond /v1/users and /v1/keys: ``POST /v1/invites``, ``GET /v1/users/{id}/sessions`` and
``POST /v1/users/{id}/sessions/revoke``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from halguru.store.records import UserRecord
from halguru_server import audit, keys_api
from halguru_server.bodies import GuardedRoute
from halguru_server.console import shell
from halguru_server.errors import ApiError, responses
from halguru_server.identity import accounts, invites, pages, roles, session_routes, users_routes, websessions
from halguru_server.identity.guards import require
from halguru_server.keys import list_keys
from halguru_server.state import Principal, ServerState, state_of

router = shell.page_router()
api = APIRouter(prefix="/v1", tags=["users"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Admin = Annotated[Principal, Depends(require("users:manage"))]
Urgent = Annotated[Principal, Depends(require("users:manage", capped=False))]  # stops abuse (inflight.py)
State = Annotated[ServerState, Depends(state_of)]
UserId = Annotated[str, Path(max_length=40)]
Role = Literal["admin", "operator", "developer", "user"]
Text = Annotated[str | None, Query(max_length=200)]
PAGE = 50
"""Users per console page."""


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, max_length=254)
    role: Role = "user"


class InviteOut(BaseModel):
    link: str = Field(description="single use, 7 days: send it to the person invited")
    role: str
    email: str | None


class SessionOut(session_routes.SessionOut):
    """A session as /auth/sessions lists it (``current``: the one asking), and whether 2FA was passed."""

    mfa_done: bool


class SessionRevoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session: str = Field(max_length=64, description="the session's id as listed")


def invite(request: Request, state: ServerState, email: str | None, role: str) -> InviteOut:
    """A new invitation and its link (``auth.public_url``, else this request's address)."""
    try:
        token = invites.create_invite(state.store, email or None, role)
    except accounts.AccountError as exc:
        raise ApiError(400, str(exc)) from None
    audit.record(request, "user.invite", email or "", {"role": role})
    base = websessions.site_url(request, state.settings.auth, state.settings.trusted_proxies)
    return InviteOut(link=invites.invite_link(base, token), role=role, email=email or None)


def sessions_of(state: ServerState, user_id: str, caller: Principal) -> list[SessionOut]:
    """The user's live sessions."""
    users_routes._user(state, user_id)
    mine = websessions.session_id(caller.web) if caller.web is not None else None
    return [SessionOut(id=websessions.session_id(s), created=s["created"], last_seen=s["last_seen"],
                       expires=s["expires"], address=s["address"], user_agent=s["user_agent"],
                       current=websessions.session_id(s) == mine, mfa_done=bool(s["mfa_done"]))
            for s in websessions.list_sessions(state.store, user_id, state.settings.auth)]


def revoke_session(request: Request, state: ServerState, user_id: str, session: str) -> None:
    if not websessions.revoke_by_id(state.store, user_id, session):
        raise ApiError(404, f"no live session {session!r} of this user")
    audit.record(request, "session.revoke", user_id, {"session": session})


@api.post("/invites", response_model=InviteOut, status_code=201, responses=responses(400))
def invite_json(body: InviteIn, request: Request, state: State, caller: Admin) -> InviteOut:
    """Invite someone (optionally bound to an email) with a role: the registration link, shown once."""
    return invite(request, state, body.email, body.role)


@api.get("/users/{user_id}/sessions", response_model=list[SessionOut], responses=responses(404))
def sessions_json(user_id: UserId, state: State, caller: Admin) -> list[SessionOut]:
    """The user's live web sessions."""
    return sessions_of(state, user_id, caller)


@api.post("/users/{user_id}/sessions/revoke", status_code=204, responses=responses(404))
def revoke_json(user_id: UserId, body: SessionRevoke, request: Request, state: State, caller: Admin) -> Response:
    """Sign one of the user's sessions out."""
    revoke_session(request, state, user_id, body.session)
    return Response(status_code=204)


@router.get("/users")
def users_page(request: Request, state: State, caller: Admin, q: Text = None, cursor: Text = None) -> HTMLResponse:
    """A page of users (oldest first; ``q``: email or name), with the actions and a link to the next page."""
    return _users(request, caller, state, q=q, cursor=cursor)


def _users(request: Request, caller: Principal, state: ServerState, *, q: str | None = None,
           cursor: str | None = None, status: int = 200, **context: Any) -> HTMLResponse:
    """The Users page: ``PAGE`` users at most (thousands would make one page megabytes), the search box, the
    "Next" link and ``context`` (a notice, an error, the invitation link)."""
    rows: list[UserRecord] = []
    next_cursor = None
    try:
        rows, next_cursor = users_routes.page(state, q, PAGE, cursor)
    except ApiError as exc:
        status, context["error"] = 422, exc.message
    query = {"q": q} if q else {}
    here = f"/admin/users?{urlencode({**query, 'cursor': cursor})}" if cursor else \
        f"/admin/users?{urlencode(query)}" if query else "/admin/users"
    more = f"/admin/users?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None
    return shell.render(request, caller, "users.html", "Users", status=status, users=rows, more=more, here=here,
                        fields=[{"name": "q", "label": "Email or name", "value": q}], roles=roles.ROLES,
                        me=caller.user["id"] if caller.user else None,
                        **{"link": None, "invite_form": {"email": "", "role": "user"}, **context})


@router.get("/users/{user_id}")
def user_page(user_id: UserId, request: Request, state: State, caller: Admin) -> HTMLResponse:
    """One user: their keys and sessions."""
    user = users_routes._user(state, user_id)
    return shell.render(request, caller, "user.html", user["email"] or user["name"] or user_id, user=user,
                        keys=list_keys(state.store, user_id), sessions=sessions_of(state, user_id, caller),
                        roles=roles.ROLES, me=caller.user["id"] if caller.user else None)


async def _form(request: Request) -> dict[str, str]:
    return await pages.form(request)


def _refusal(request: Request, caller: Principal, state: ServerState, exc: ApiError) -> HTMLResponse:
    return _users(request, caller, state, status=exc.status, error=exc.message)


@router.post("/users/invite")
async def invite_form(request: Request, state: State, caller: Admin) -> Response:
    """The invitation form: the page again, with the link (shown this once)."""
    form = await _form(request)
    email, role = form.get("email", "").strip(), form.get("role", "user")
    try:
        made = invite(request, state, email or None, role)
    except ApiError as exc:  # the form again with what was typed, to correct rather than retype
        return _users(request, caller, state, status=exc.status, error=exc.message,
                      invite_form={"email": email, "role": role})
    return _users(request, caller, state, link=made.link,
                  notice=f"Invitation for {made.email or 'anyone with the link'} as {made.role}: send them the "
                         "link below (single use, 7 days; it is not shown again).")


@router.post("/users/{user_id}/{action}")
async def user_action(user_id: UserId, action: Literal["role", "disable", "enable", "unlock", "reset-2fa",
                                                       "revoke-key", "revoke-session"],
                      request: Request, state: State, caller: Urgent) -> Response:
    """A user's action from a form (role change, disable, enable, unlock, 2FA reset, key or session revoke)."""
    form = await _form(request)
    try:
        _apply(action, user_id, form, request, state, caller)
    except ApiError as exc:
        return _refusal(request, caller, state, exc)
    target = form.get("back", "")
    return shell.back(target if target.startswith("/admin/") else "/admin/users")


def _apply(action: str, user_id: str, form: dict[str, Any], request: Request, state: ServerState,
           caller: Principal) -> None:
    if action == "role":
        role = form.get("role", "")
        if role not in roles.ROLES:
            raise ApiError(400, f"unknown role {role!r}")
        users_routes.change_user(user_id, users_routes.UserPatch(role=role), request, state, caller)
    elif action in ("disable", "enable"):
        users_routes.change_user(user_id, users_routes.UserPatch(disabled=action == "disable"), request, state,
                                 caller)
    elif action == "reset-2fa":
        users_routes.reset_2fa(user_id, request, state, caller)
    elif action == "unlock":
        users_routes.unlock(user_id, request, state, caller)
    elif action == "revoke-key":
        key = next((k for k in list_keys(state.store, user_id) if k.id == form.get("key")), None)
        if key is None:
            raise ApiError(404, "no such key of this user")
        keys_api.revoke(key.id, request, state, caller)
    else:
        revoke_session(request, state, user_id, form.get("session", ""))
