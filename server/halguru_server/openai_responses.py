"""OpenAI's Responses API (``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``) on the chat
completions' machinery: the same checks, queue, conversation filing, tools and errors (``openai_api.start``);
a streamed one's events are ``openai_response_stream``'s.

A request is put as the chat completion its ``input`` and the stored chain of ``previous_response_id`` make
(``openai_response_items``), so a chain of responses is one halguru conversation, as a chat is: its transcript
hashes to the thread the earlier answer was filed under (``openai_threads``). Two continuations of one response
part ways as two chats with the same history do: the second gets a conversation of its own, holding the history.
A response is stored (unless ``store: false``) as a message of the ``openai-responses`` channel, its owner's
only, with what a continuation needs (``openai_response_store``); it goes with its conversation (deleting the
conversation makes it 404) or alone (``DELETE``). Only answered responses are stored: one whose run failed or
paused has no id to continue from, as the chat completion's retry starts over.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from halguru_server import service
from halguru_server.api import SSE_EVENT
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, responses
from halguru_server.openai_api import Caller, State, start
from halguru_server.openai_response_items import (
    ResponsesRequest,
    answer_message,
    call_item,
    chat_request,
    earlier_messages,
    message_item,
    renamed,
    response_object,
    usage_of,
)
from halguru_server.openai_response_store import Chain, delete, history, load, save
from halguru_server.openai_response_stream import events
from halguru_server.openai_schemas import OpenAIErrorBody

router = APIRouter(prefix="/v1", tags=["openai"], responses=responses(401, 422, model=OpenAIErrorBody),
                   route_class=GuardedRoute)
ResponseId = Annotated[str, Path(max_length=200)]


@router.post("/responses", responses={
    200: {"content": {"application/json": {"schema": {"type": "object"}},
                      "text/event-stream": {"schema": SSE_EVENT}},
          "description": "a response, or its response.* events when stream"},
    **responses(400, 403, 404, 409, 413, 502, 503, model=OpenAIErrorBody)})
async def create_response(body: ResponsesRequest, request: Request, state: State, caller: Caller) -> Response:
    """Run the agent named by ``model`` on ``input``, after the conversation of ``previous_response_id``."""
    body.check_supported()
    chain = Chain(body.previous_response_id)
    earlier: list[dict[str, Any]] = []
    if body.previous_response_id is not None:
        stored = await asyncio.to_thread(load, state, caller, body.previous_response_id, "previous_response_id")
        earlier = earlier_messages(await asyncio.to_thread(history, state, stored))
        chain.conversation, chain.earlier = stored["conversation"], len(earlier)
    chat, where, chain.lead = chat_request(body, earlier)
    try:
        queued = await start(chat, request, state, caller)
    except ApiError as exc:
        raise renamed(exc, where) from None
    response_id = f"resp_{uuid.uuid4().hex}"
    if body.stream:
        stream = events(state, caller, queued, body, chat, chain, response_id)
        return service.EventStream(stream, state, queued.reservation.release, queued.run.settle)
    try:
        answer = await queued.answer(request, state)
    except ApiError as exc:
        raise renamed(exc, where) from None
    status = "incomplete" if answer.finish == "length" else "completed"
    output = [message_item(f"msg_{response_id[5:]}", answer.content, status)] \
        if answer.content or not answer.calls else []
    output += [call_item(f"fc_{response_id[5:]}_{i}", call) for i, call in enumerate(answer.calls)]
    response = response_object(response_id, body, status, output, usage_of(answer.finished))
    if body.store:
        kept = chain.kept(chat, queued.thread.conversation, answer_message(answer.content, answer.calls))
        await asyncio.to_thread(save, state, caller, queued.served.name, queued.thread.conversation, response, kept)
    return JSONResponse(response)


@router.get("/responses/{response_id}", responses=responses(404, model=OpenAIErrorBody))
def get_response(response_id: ResponseId, state: State, caller: Caller) -> JSONResponse:
    """A stored response (the caller's own)."""
    return JSONResponse(load(state, caller, response_id)["response"])


@router.delete("/responses/{response_id}", responses=responses(404, model=OpenAIErrorBody))
def delete_response(response_id: ResponseId, state: State, caller: Caller) -> JSONResponse:
    """Forget a stored response (its conversation stays): it can no longer be retrieved or continued."""
    load(state, caller, response_id)
    delete(state, response_id)
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})
