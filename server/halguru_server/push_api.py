"""/chat/api/push: the web chat's notifications for a signed-in browser (``halguru_server.push``).

``GET /key`` gives the VAPID public key the page subscribes with; ``POST /subscriptions`` stores this
browser's subscription for the signed-in user (again after each sign-in: it is bound to the session); ``DELETE
/subscriptions?endpoint=...`` turns them off. Only a signed-in browser (a web session) subscribes: anonymous
visitors and API keys get no notifications.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.push import MAX_ENDPOINT, Pusher, SubscriptionIn, check_subscription
from halguru_server.state import Principal, ServerState, state_of

router = APIRouter(prefix="/chat/api/push", tags=["web chat"], responses=responses(401, 403, 404, 422),
                   route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("chat:use"))]
State = Annotated[ServerState, Depends(state_of)]


class PushKey(BaseModel):
    public_key: str = Field(description="the applicationServerKey for pushManager.subscribe (base64url)")


class Subscribed(BaseModel):
    endpoint: str


def _pusher(state: ServerState) -> Pusher:
    if state.pusher is None or not state.pusher.enabled:
        raise ApiError(404, "notifications are off on this server (push.enabled)")
    return state.pusher


def _browser(caller: Principal) -> tuple[str, str]:
    """The signed-in user's id and their web session's: notifications go to browsers, not to keys."""
    if caller.web is None or caller.user is None:
        raise ApiError(403, "notifications are for a signed-in browser: sign in at /auth/login", "forbidden")
    return caller.user["id"], caller.web["id_hash"]


@router.get("/key", response_model=PushKey)
async def push_key(state: State, caller: Caller) -> PushKey:
    """The server's VAPID public key (made on first need, the same on every replica)."""
    return PushKey(public_key=await asyncio.to_thread(_pusher(state).public_key))


@router.post("/subscriptions", response_model=Subscribed, status_code=201)
def subscribe(body: SubscriptionIn, state: State, caller: Caller) -> Subscribed:
    """Notify this browser (``PushSubscription.toJSON()``) of answers that come while the chat is elsewhere."""
    pusher = _pusher(state)
    user_id, session = _browser(caller)
    endpoint, p256dh, auth = check_subscription(body, pusher.settings.allow_insecure_endpoints)
    state.store.save_push_subscription(endpoint, user_id, p256dh, auth, session, keep=pusher.settings.max_per_user)
    return Subscribed(endpoint=endpoint)


@router.delete("/subscriptions", status_code=204)
def unsubscribe(state: State, caller: Caller,
                endpoint: Annotated[str | None, Query(max_length=MAX_ENDPOINT, description="the endpoint of "
                                                      "the subscription to delete")] = None) -> Response:
    """Turn this browser's notifications off (done already is fine)."""
    _pusher(state)
    user_id, _ = _browser(caller)
    if not endpoint:
        raise ApiError(422, "endpoint: the subscription's endpoint is required")
    state.store.delete_push_subscription(endpoint, user_id)
    return Response(status_code=204)
