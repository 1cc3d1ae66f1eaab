"""OpenAI's Responses API (``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``) on the chat
completions' machinery: the same checks, queue, conversation filing, tools and errors (``openai_api.start``).

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
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from halguru_server import service
from halguru_server.api import SSE_EVENT
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, openai_error, responses
from halguru_server.openai_api import Caller, Queued, State, Watch, _finish, _paused, start
from halguru_server.openai_response_items import (
    ResponsesRequest,
    answer_message,
    call_item,
    chat_request,
    dumps,
    earlier_messages,
    message_item,
    renamed,
    response_object,
    usage_of,
)
from halguru_server.openai_response_store import Chain, delete, history, load, save
from halguru_server.openai_schemas import ChatRequest, OpenAIErrorBody
from halguru_server.openai_tools import as_requests, openai_calls
from halguru_server.state import Principal, ServerState

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
        events = _events(state, caller, queued, body, chat, chain, response_id)
        return service.EventStream(events, state, queued.reservation.release, queued.run.settle)
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


async def _events(state: ServerState, caller: Principal, queued: Queued, body: ResponsesRequest, chat: ChatRequest,
                  chain: Chain, response_id: str) -> AsyncIterator[str]:
    """The run as the Responses API's events: ``response.created`` and ``response.in_progress``, the output items
    (a message's text deltas, each function call whole), then ``response.completed`` (``response.incomplete`` when
    cut at max_output_tokens, ``response.failed`` when the run failed, an ``error`` for a refusal or a pause)."""
    sequence = itertools.count()
    created = time.time()
    message_id = f"msg_{response_id[5:]}"
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    output: list[dict[str, Any]] = []  # the items done
    writing: list[int] = []  # the output index of the message being written
    watch = Watch()
    answered: list[dict[str, Any]] = []

    def sse(kind: str, **fields: Any) -> str:
        return f"event: {kind}\ndata: {dumps({'type': kind, 'sequence_number': next(sequence), **fields})}\n\n"

    def snapshot(status: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(response_id, body, status, list(output), usage, created)

    def error(kind: str, message: str, retry_after: int | None = None, status: int = 500,
              param: str | None = None) -> str:
        detail = openai_error(status, message, kind, param)  # "error" in the data: the SDK raises it as an APIError
        return sse("error", code=detail["code"], message=message, param=param, error=detail)

    def open_message() -> str:
        writing.append(len(output))
        item = {"type": "message", "id": message_id, "status": "in_progress", "role": "assistant", "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return (sse("response.output_item.added", output_index=writing[0], item=item)
                + sse("response.content_part.added", item_id=message_id, output_index=writing[0], content_index=0,
                      part=part))

    def close_message(status: str = "completed") -> str:
        if not writing:
            return ""
        index, whole = writing.pop(), "".join(text)
        item = message_item(message_id, whole, status)
        output.append(item)
        return (sse("response.output_text.done", item_id=message_id, output_index=index, content_index=0, text=whole,
                    logprobs=[])
                + sse("response.content_part.done", item_id=message_id, output_index=index, content_index=0,
                      part=item["content"][0])
                + sse("response.output_item.done", output_index=index, item=item))

    def call(event: Any) -> str:
        head = close_message()
        [found] = openai_calls([event])
        calls.append(found)
        index, item = len(output), call_item(f"fc_{response_id[5:]}_{len(calls) - 1}", found)
        output.append(item)
        return (head + sse("response.output_item.added", output_index=index,
                           item={**item, "arguments": "", "status": "in_progress"})
                + sse("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                      delta=item["arguments"])
                + sse("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                      name=item["name"], arguments=item["arguments"])
                + sse("response.output_item.done", output_index=index, item=item))

    def finish(event: Any) -> str:
        if watch.too_long:
            return error("context_length_exceeded", watch.too_long[0], status=400, param="input")
        if event.status == "paused":
            return error("run_paused", _paused(event.run_id, watch.approvals), status=409)
        if event.status != "ok":  # the details are in the run's trace, for the key's owner
            failed = snapshot("failed")
            failed["error"] = {"code": "server_error", "message": f"the agent's run {event.run_id} ended "
                                                                  f"{event.status}; see GET /v1/runs/{event.run_id}"}
            return sse("response.failed", response=failed)
        status = "incomplete" if _finish(watch.last, calls) == "length" else "completed"
        head = open_message() if not writing and not output else ""
        head += close_message(status)
        final = snapshot(status, usage_of(event))
        answered.append(final)
        return head + sse(f"response.{status}", response=final)

    def render(event: Any) -> str | None:
        watch.see(event)
        if event.type == "token" and not event.parent_run_id:
            head = "" if writing else open_message()
            text.append(event.text)
            return head + sse("response.output_text.delta", item_id=message_id, output_index=writing[0],
                              content_index=0, delta=event.text, logprobs=[])
        if event.type == "tool_call" and event.client and not event.parent_run_id:
            return call(event)
        if event.type == "run_finished":
            return finish(event)
        return None

    yield sse("response.created", response=snapshot("in_progress")) + \
        sse("response.in_progress", response=snapshot("in_progress"))
    async for chunk in service.sse_body(state, queued.run.events(), render, error):
        if answered:  # filed before the client hears of it: its next request may follow at once
            final = answered.pop()
            content = "".join(text)
            await asyncio.to_thread(queued.thread.remember, state, content, as_requests(calls))
            if body.store:
                kept = chain.kept(chat, queued.thread.conversation, answer_message(content, calls))
                await asyncio.to_thread(save, state, caller, queued.served.name, queued.thread.conversation, final,
                                        kept)
        await watch.file_paused(state, queued.thread, "".join(text))
        yield chunk
