"""The signed-in caller's JSON API: who am I (``GET /auth/me``, with the CSRF token a page sends back), my
sessions (list, sign one out) and "sign out everywhere". For scripts and the web chat; the account pages
(``account_routes``) offer the same to people, with forms. Sign-out of this browser is ``POST /auth/logout``
there.

The sessions are the whole account's, so an API key reaches them only with the user's full reach: a key limited
to some agents or that expires is refused (403), as it may revoke only keys within its own reach (keys_api): a
stolen narrow key must not watch the user's browsers nor sign them all out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel

from halguru_server import audit
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity import websessions
from halguru_server.identity.guards import require
from halguru_server.state import Principal, ServerState, state_of

router = APIRouter(prefix="/auth", tags=["account"], responses=responses(401, 403), route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("account:own"))]
# signing browsers out stops their abuse: not refused while they hold the person's places in flight (inflight.py)
Signer = Annotated[Principal, Depends(require("account:own", capped=False))]
State = Annotated[ServerState, Depends(state_of)]


class UserOut(BaseModel):
    id: str
    email: str | None
    name: str
    role: str
    email_verified: bool
    totp_enabled: bool


class MeOut(BaseModel):
    user: UserOut | None  # None: --dev, or a key without a user (a role of its own)
    role: str | None
    permissions: list[str]
    via: str  # session, key or dev
    csrf: str | None  # a session's: send it as X-CSRF-Token (or the csrf_token field) with every state change
    mfa_done: bool


class SessionOut(BaseModel):
    id: str
    created: float
    last_seen: float
    expires: float
    address: str | None
    user_agent: str | None
    current: bool


class SessionList(BaseModel):
    data: list[SessionOut]


class Revoked(BaseModel):
    revoked: int


@router.get("/me", response_model=MeOut)
def me(caller: Annotated[Principal, Depends(require("account:own", mfa_pending=True))]) -> MeOut:
    """Who is calling, with what role and permissions; a session also gets its CSRF token here (and whether
    its second factor is done: until then nothing else answers)."""
    user = caller.user
    return MeOut(user=UserOut.model_validate(dict(user)) if user else None,
                 role=caller.role, permissions=sorted(caller.permissions),
                 via="dev" if caller.dev else "key" if caller.key is not None else "session",
                 csrf=caller.web["csrf"] if caller.web else None,
                 mfa_done=caller.web["mfa_done"] if caller.web else True)


def _user_id(caller: Principal) -> str:
    if caller.user is None:
        raise ApiError(404, "no user: this key is not a user's (or the server runs with --dev)")
    return caller.user["id"]


def _account_user_id(caller: Principal) -> str:
    """The user whose web sessions the caller may list and end: a signed-in browser's, or a key's that has
    the user's full reach (no agent list, no expiry)."""
    user_id = _user_id(caller)
    key = caller.key
    if key is not None and (key.agents or key.expires is not None):
        limits = " and ".join(([f"to {', '.join(key.agents)}"] if key.agents else [])
                              + (["in time (it expires)"] if key.expires is not None else []))
        raise ApiError(403, f"this API key is limited {limits}; your web sessions are the whole account's: use a "
                            "key without an agent list or expiry, or sign in at /auth/account", "forbidden")
    return user_id


@router.get("/sessions", response_model=SessionList, responses=responses(404))
def list_sessions(state: State, caller: Caller) -> SessionList:
    """The user's signed-in browsers (live ones), most recently active first."""
    current = websessions.session_id(caller.web) if caller.web else None
    return SessionList(data=[
        SessionOut(id=websessions.session_id(s), created=s["created"], last_seen=s["last_seen"], expires=s["expires"],
                   address=s["address"], user_agent=s["user_agent"], current=websessions.session_id(s) == current)
        for s in websessions.list_sessions(state.store, _account_user_id(caller), state.settings.auth)])


@router.delete("/sessions/{session_id}", status_code=204, responses=responses(404))
def revoke_session(session_id: Annotated[str, Path(max_length=64)], request: Request, state: State,
                   caller: Signer) -> Response:
    """Sign out one of the user's browsers (404 for an id that is not theirs)."""
    user_id = _account_user_id(caller)
    if not websessions.revoke_by_id(state.store, user_id, session_id):
        raise ApiError(404, f"no session {session_id!r}; GET /auth/sessions lists them")
    audit.record(request, "auth.sign_out", user_id, {"session": session_id})
    return Response(status_code=204)


@router.post("/logout-all", response_model=Revoked, responses=responses(404))
def logout_all(request: Request, response: Response, state: State, caller: Signer) -> Revoked:
    """Sign out every browser of the user, this one included (its cookie is cleared)."""
    user_id = _account_user_id(caller)
    revoked = websessions.sign_out_everywhere(state.store, user_id)
    audit.record(request, "auth.sign_out", user_id, {"everywhere": True, "revoked": revoked})
    if caller.web is not None:
        websessions.clear_cookie(response, request, state.settings.trusted_proxies)
    return Revoked(revoked=revoked)
