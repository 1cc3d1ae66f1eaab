"""A Responses API run streamed as OpenAI's events: ``response.created`` and ``response.in_progress``, the output
items (a message's text deltas, each function call whole), then ``response.completed`` (``response.incomplete``
when cut at max_output_tokens, ``response.failed`` when the run failed, an ``error`` for a refusal or a pause).

``ResponseStream`` keeps what the events have said so far (the items done, the message being written) and writes
each run event as the SSE text it becomes; ``events`` drives it and files the answer before the client hears
that it is done.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from halguru_server import service
from halguru_server.errors import openai_error
from halguru_server.openai_api import Queued, Watch, finish_reason, paused_message
from halguru_server.openai_response_items import (
    ResponsesRequest,
    answer_message,
    call_item,
    dumps,
    message_item,
    response_object,
    usage_of,
)
from halguru_server.openai_response_store import Chain, save
from halguru_server.openai_schemas import ChatRequest
from halguru_server.openai_tools import as_requests, openai_calls
from halguru_server.state import Principal, ServerState


@dataclass
class ResponseStream:
    """The events of one response so far: what ``render`` writes next depends on the items already sent."""

    response_id: str
    body: ResponsesRequest
    created: float = field(default_factory=time.time)
    text: list[str] = field(default_factory=list)  # the message's deltas so far
    calls: list[dict[str, Any]] = field(default_factory=list)  # the client's tool calls, as a chat completion's
    output: list[dict[str, Any]] = field(default_factory=list)  # the items done
    writing: list[int] = field(default_factory=list)  # the output index of the message being written
    answered: list[dict[str, Any]] = field(default_factory=list)  # the final response, once the run is done
    watch: Watch = field(default_factory=Watch)
    sequence: Any = field(default_factory=itertools.count)

    @property
    def message_id(self) -> str:
        return f"msg_{self.response_id[5:]}"

    def sse(self, kind: str, **fields: Any) -> str:
        data = dumps({"type": kind, "sequence_number": next(self.sequence), **fields})
        return f"event: {kind}\ndata: {data}\n\n"

    def snapshot(self, status: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self.response_id, self.body, status, list(self.output), usage, self.created)

    def start(self) -> str:
        return (self.sse("response.created", response=self.snapshot("in_progress"))
                + self.sse("response.in_progress", response=self.snapshot("in_progress")))

    def error(self, kind: str, message: str, retry_after: int | None = None, status: int = 500,
              param: str | None = None) -> str:
        detail = openai_error(status, message, kind, param)  # "error" in the data: the SDK raises it as an APIError
        return self.sse("error", code=detail["code"], message=message, param=param, error=detail)

    def render(self, event: Any) -> str | None:
        """A run event as the events it makes: a token a text delta (opening the message first), a call of the
        client's tools a function call item, the run's end the response's last events."""
        self.watch.see(event)
        if event.type == "token" and not event.parent_run_id:
            return self.delta(event.text)
        if event.type == "tool_call" and event.client and not event.parent_run_id:
            return self.call(event)
        if event.type == "run_finished":
            return self.finish(event)
        return None

    def delta(self, text: str) -> str:
        head = "" if self.writing else self.open_message()
        self.text.append(text)
        return head + self.sse("response.output_text.delta", item_id=self.message_id, output_index=self.writing[0],
                               content_index=0, delta=text, logprobs=[])

    def open_message(self) -> str:
        self.writing.append(len(self.output))
        item = {"type": "message", "id": self.message_id, "status": "in_progress", "role": "assistant",
                "content": []}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return (self.sse("response.output_item.added", output_index=self.writing[0], item=item)
                + self.sse("response.content_part.added", item_id=self.message_id, output_index=self.writing[0],
                           content_index=0, part=part))

    def close_message(self, status: str = "completed") -> str:
        if not self.writing:
            return ""
        index, whole = self.writing.pop(), "".join(self.text)
        item = message_item(self.message_id, whole, status)
        self.output.append(item)
        where = {"item_id": self.message_id, "output_index": index, "content_index": 0}
        return (self.sse("response.output_text.done", **where, text=whole, logprobs=[])
                + self.sse("response.content_part.done", **where, part=item["content"][0])
                + self.sse("response.output_item.done", output_index=index, item=item))

    def call(self, event: Any) -> str:
        """A call of the client's tools: the message before it closed, then the call's item, its arguments whole."""
        head = self.close_message()
        [found] = openai_calls([event])
        self.calls.append(found)
        index, item = len(self.output), call_item(f"fc_{self.response_id[5:]}_{len(self.calls) - 1}", found)
        self.output.append(item)
        where = {"item_id": item["id"], "output_index": index}
        return (head + self.sse("response.output_item.added", output_index=index,
                                item={**item, "arguments": "", "status": "in_progress"})
                + self.sse("response.function_call_arguments.delta", **where, delta=item["arguments"])
                + self.sse("response.function_call_arguments.done", **where, name=item["name"],
                           arguments=item["arguments"])
                + self.sse("response.output_item.done", output_index=index, item=item))

    def finish(self, event: Any) -> str:
        """The run's end: a refusal or a pause as an ``error``, a failure as ``response.failed``, else the message
        closed (an empty one if the run wrote nothing) and ``response.completed`` or ``response.incomplete``."""
        if self.watch.too_long:
            return self.error("context_length_exceeded", self.watch.too_long[0], status=400, param="input")
        if event.status == "paused":
            return self.error("run_paused", paused_message(event.run_id, self.watch.approvals), status=409)
        if event.status != "ok":  # the details are in the run's trace, for the key's owner
            failed = self.snapshot("failed")
            failed["error"] = {"code": "server_error", "message": f"the agent's run {event.run_id} ended "
                                                                  f"{event.status}; see GET /v1/runs/{event.run_id}"}
            return self.sse("response.failed", response=failed)
        status = "incomplete" if finish_reason(self.watch.last, self.calls) == "length" else "completed"
        head = self.open_message() if not self.writing and not self.output else ""
        head += self.close_message(status)
        final = self.snapshot(status, usage_of(event))
        self.answered.append(final)
        return head + self.sse(f"response.{status}", response=final)


async def events(state: ServerState, caller: Principal, queued: Queued, body: ResponsesRequest, chat: ChatRequest,
                 chain: Chain, response_id: str) -> AsyncIterator[str]:
    """The run's events, its answer filed (and the response stored) before the client hears of it: the client's
    next request may follow at once."""
    stream = ResponseStream(response_id, body)
    yield stream.start()
    async for chunk in service.sse_body(state, queued.run.events(), stream.render, stream.error):
        if stream.answered:
            await _file(state, caller, queued, body, chat, chain, stream)
        await stream.watch.file_paused(state, queued.thread, "".join(stream.text))
        yield chunk


async def _file(state: ServerState, caller: Principal, queued: Queued, body: ResponsesRequest, chat: ChatRequest,
                chain: Chain, stream: ResponseStream) -> None:
    final, content = stream.answered.pop(), "".join(stream.text)
    await asyncio.to_thread(queued.thread.remember, state, content, as_requests(stream.calls))
    if body.store:
        kept = chain.kept(chat, queued.thread.conversation, answer_message(content, stream.calls))
        await asyncio.to_thread(save, state, caller, queued.served.name, queued.thread.conversation, final, kept)
