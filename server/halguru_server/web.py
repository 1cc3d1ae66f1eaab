"""The bundled web chat: static files plus a small API under /chat/api.

An agent's web chat is ``public`` (anyone, rate-limited per client address) or
``key`` (signed-in users and API keys only; ``signin`` is another name for it).
Agents choose with ``metadata: {web_chat: public}``; the server default is ``key``
(HALGURU_SERVE_WEB_CHAT). Signed-in users see their own conversations from any device.
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from halguru_server import api, ratelimit, service, sessions
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.identity import websessions
from halguru_server.identity.guards import public, require
from halguru_server.schemas import (
    AgentList,
    ConversationIn,
    ConversationOut,
    ConversationPage,
    ConversationRename,
    MessageIn,
    MessageList,
    RunCancelOut,
    RunOut,
    SessionOut,
)
from halguru_server.state import Principal, ServerState, agent_for, state_of

STATIC = FilePath(__file__).parent / "static"
router = APIRouter(prefix="/chat/api", tags=["web chat"], responses=responses(401, 403, 422), route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("chat:use", anonymous=True))]  # anonymous: public agents only
Reader = Annotated[Principal, Depends(require("agents:read", anonymous=True))]
State = Annotated[ServerState, Depends(state_of)]
ConvId = Annotated[str, Path(max_length=100)]


@router.get("/agents", response_model=AgentList)
def chat_agents(state: State, caller: Reader) -> AgentList:
    """Agents whose chat this caller may open (public ones without a key)."""
    return AgentList(data=[api.agent_out(state, n, caller) for n, s in state.agents.items()
                           if caller.allows(s)])


@router.post("/session", response_model=SessionOut, status_code=201, responses=responses(403, 429))
def chat_session(request: Request, state: State, caller: Caller) -> SessionOut:
    """A new anonymous session: send its token as ``X-Chat-Session``; the conversations started with it are
    its own (no other session, and no API key but an admin's, can open them)."""
    if not _from_a_chat_page(request, state):
        raise ApiError(403, "a chat session is only created from this server's pages or an agent's embed_origins "
                            "(the request's Origin is another site)", "cross_site")
    if caller.anonymous:
        ratelimit.check(state.limiter, caller.client)
    return SessionOut(token=sessions.issue(state.settings.session_secret or ""))


def _from_a_chat_page(request: Request, state: ServerState) -> bool:
    """Whether a browser sent this from this server's origin or a site an agent lets embed its chat: another
    site could otherwise make its visitors' browsers spend their address's rate limit. No ``Origin`` (curl, SDKs)
    passes unless ``Sec-Fetch-Site`` says the browser sent it cross-site."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "").lower() != "cross-site"
    if websessions.same_origin(request, state.settings.trusted_proxies, state.settings.auth.public_url):
        return True
    return origin.lower() in {o.lower() for s in state.agents.values() for o in s.embed_origins}


@router.post("/conversations", response_model=ConversationOut, status_code=201,
             responses=responses(400, 404, 409, 429))
def chat_new(body: ConversationIn, state: State, caller: Caller) -> ConversationOut:
    agent_for(state, caller, body.agent)
    if caller.anonymous:
        ratelimit.check(state.limiter, caller.client)
    return ConversationOut(**service.new_conversation(state, caller, body.agent, service.clean_title(body.title)))


@router.get("/conversations", response_model=ConversationPage, responses=responses(400))
def chat_conversations(state: State, caller: Caller, agent: Annotated[str | None, Query(max_length=100)] = None,
                       limit: Annotated[int, Query(ge=1, le=100)] = 20,
                       cursor: Annotated[str | None, Query(max_length=200)] = None) -> ConversationPage:
    """The caller's own conversations, newest first: a signed-in user's from every device, an anonymous
    session's from the browser holding it (even an operator sees only their own here)."""
    rows, next_cursor = service.list_conversations(state, caller, agent, limit, cursor, own=True)
    return ConversationPage(data=[ConversationOut(**r) for r in rows], next_cursor=next_cursor)


@router.patch("/conversations/{conversation_id}", response_model=ConversationOut, responses=responses(400, 404, 429))
async def chat_rename(conversation_id: ConvId, body: ConversationRename, request: Request, state: State,
                      caller: Caller) -> ConversationOut:
    """Rename one of the caller's conversations, as PATCH /v1/conversations/{id}."""
    if caller.anonymous:
        await asyncio.to_thread(ratelimit.check, state.limiter, caller.client)
    return await asyncio.to_thread(api.rename_conversation, conversation_id, body, state, caller)


@router.delete("/conversations/{conversation_id}", status_code=204, responses=responses(404, 429))
async def chat_delete(conversation_id: ConvId, request: Request, state: State, caller: Caller) -> Response:
    """Delete one of the caller's conversations with its messages and runs, as DELETE /v1/conversations/{id}
    (audited alike)."""
    if caller.anonymous:
        await asyncio.to_thread(ratelimit.check, state.limiter, caller.client)
    return await asyncio.to_thread(api.delete_conversation, conversation_id, request, state, caller)


@router.get("/conversations/{conversation_id}/messages", response_model=MessageList,
            responses=responses(400, 404))
def chat_history(conversation_id: ConvId, state: State, caller: Caller,
                 limit: Annotated[int, Query(ge=1, le=service.MESSAGES_MAX)] = service.MESSAGES_PAGE,
                 cursor: Annotated[str | None, Query(max_length=200)] = None) -> MessageList:
    """A page of the conversation's messages, oldest first, as ``GET /v1/conversations/{id}/messages``."""
    service.get_conversation(state, caller, conversation_id)
    return service.message_list(state, conversation_id, limit, cursor)


@router.get("/runs/{run_id}/events", responses={200: {"content": {"text/event-stream": {}}}, 204: {},
                                                **responses(400, 404, 429)})
async def chat_resume(run_id: Annotated[str, Path(max_length=50)], state: State, caller: Caller,
                      last_event_id: Annotated[str | None, Header(max_length=120)] = None) -> Response:
    """Back into an answer whose stream broke (its server went away): like GET /v1/runs/{id}/events; anonymous
    callers' resumes count in their rate limit (each one follows the run in the store)."""
    if caller.anonymous:
        await asyncio.to_thread(ratelimit.check, state.limiter, caller.client)
    return await api.resume_stream(state, caller, run_id, last_event_id, None)


@router.post("/runs/{run_id}/cancel", response_model=RunCancelOut, responses=responses(404, 409, 429))
async def chat_cancel(run_id: Annotated[str, Path(max_length=50)], request: Request, state: State,
                      caller: Caller) -> RunCancelOut:
    """The chat's Stop: like POST /v1/runs/{id}/cancel, for the caller's own runs (an anonymous session's only)."""
    if caller.anonymous:
        await asyncio.to_thread(ratelimit.check, state.limiter, caller.client)
    return await api.cancel(request, state, caller, run_id)


@router.post("/conversations/{conversation_id}/messages", response_model=RunOut,
             responses={200: api.SSE_DOC, **api.HELD_DOC, **responses(400, 404, 409, 413, 429, 503)})
async def chat_send(conversation_id: ConvId, body: MessageIn, request: Request, state: State,
                    caller: Caller) -> Response | RunOut:
    """Like POST /v1/conversations/{id}/messages; anonymous callers are rate-limited."""
    # Off the event loop: the rate limit is a write, which waits while another process writes to the store
    await asyncio.to_thread(service.get_conversation, state, caller, conversation_id)
    if caller.anonymous:
        await asyncio.to_thread(ratelimit.check, state.limiter, caller.client)
    return await api.answer(request, state, caller, conversation_id, body)


pages = APIRouter(include_in_schema=False, dependencies=[Depends(public)], route_class=GuardedRoute)


@pages.api_route("/", methods=["GET", "HEAD"])  # HEAD: what uptime checks and load balancers send
def root() -> RedirectResponse:
    return RedirectResponse("/chat/")


@pages.api_route("/chat", methods=["GET", "HEAD"])
@pages.api_route("/chat/", methods=["GET", "HEAD"])
def chat_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=_SECURITY)


@pages.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                        headers={**_SECURITY, "Cache-Control": "public, max-age=86400"})


class SecureStatic(StaticFiles):
    """The chat's static files with the page's security headers (``nosniff``: a script is only ever run as
    the type it is served as), asked again each time (``no-cache``: a 304 by their ETag while unchanged), so a
    release's chat.js is never mixed with a browser's heuristically cached copy of the old one."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update({**_SECURITY, "Cache-Control": "no-cache"})
        return response


_SECURITY = {
    # No remote anything: scripts, styles and images from this server only (no inline HTML from models anyway).
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
SECURITY = _SECURITY  # the installable app's and the widget's pages use the same headers
