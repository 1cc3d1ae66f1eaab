"""OpenAI-compatible endpoints: the model name is the agent name, so existing clients and SDKs work unchanged.

Each request carries the whole chat; the last user message is the run's input, so the request is traced like
any other run. The earlier messages are a stored conversation: the one an earlier completion of the same chat
left (``openai_threads``), or a new one holding them as its history. A request may send functions the client
runs (``tools``, ``openai_tools``): a run that calls them answers with ``tool_calls``, and the client's next
request, ending with their results (``role: tool``), starts a run with those results instead of a user message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from halguru.agents.events import ModelResult, Token
from halguru.models.base import MAX_ARGUMENTS_DEPTH, Message, ToolCallRequest, json_depth
from halguru.printable import is_blank
from halguru_server import service
from halguru_server.agents import ServedAgent
from halguru_server.api import SSE_EVENT
from halguru_server.bodies import GuardedRoute
from halguru_server.errors import ApiError, openai_error, responses
from halguru_server.identity.guards import require
from halguru_server.openai_schemas import (
    ChatCompletion,
    ChatMessage,
    ChatRequest,
    Choice,
    ChoiceMessage,
    ChoiceToolCall,
    CompletionUsage,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
)
from halguru_server.openai_threads import Thread, open_thread
from halguru_server.openai_tools import as_requests, client_tools, left_once_decided, openai_calls
from halguru_server.schemas import BLANK_MESSAGE
from halguru_server.state import Principal, ServerState, agent_for, state_of

router = APIRouter(prefix="/v1", tags=["openai"], responses=responses(401, 422, model=OpenAIErrorBody),
                   route_class=GuardedRoute)
Caller = Annotated[Principal, Depends(require("chat:use"))]
Reader = Annotated[Principal, Depends(require("agents:read"))]
State = Annotated[ServerState, Depends(state_of)]
# The header OpenAI's Python and JS SDKs read before retrying (by default twice) a 408, 409, 429 or 5xx answer
NO_RETRY = {"x-should-retry": "false"}


def _agent(state: ServerState, caller: Principal, model: str) -> ServedAgent:
    """The agent named by ``model``; an unknown one is OpenAI's ``model_not_found``, pointing an OpenAI client at
    the list it can read (``client.models.list()``), not at /v1/agents."""
    try:
        return agent_for(state, caller, model)
    except ApiError as exc:
        if exc.status == 404:
            raise ApiError(404, f"no model {model!r} (a model here is an agent's name); GET /v1/models lists them",
                           "model_not_found", param="model") from None
        raise


def _text(content: str | list[dict[str, Any]] | None, where: str, role: str) -> str:
    """The message's text: its string, or its text parts joined (an assistant's refusal parts too, as OpenAI's
    request schema allows in a history sent back)."""
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for j, part in enumerate(content):  # the part at fault is named, as the Responses endpoint names it
        kind = part.get("type")
        if kind not in ("text", "refusal") or (kind == "refusal" and role != "assistant"):
            at = f"{where}.{j}.type"
            raise ApiError(400, f"{at}: content part type {kind!r} is not supported: this endpoint takes text "
                                "parts only (no images, audio or files); send text", param=at)
        if not isinstance(part.get(kind), str):  # a number or an object was echoed back as its repr
            raise ApiError(400, f"{where}.{j}.{kind}: a {kind} content part's {kind!r} must be a string",
                           param=f"{where}.{j}.{kind}")
        parts.append(part[kind])
    return "".join(parts)


def _tool_calls(calls: list[dict[str, Any]] | None, where: str) -> list[ToolCallRequest]:
    """An assistant message's ``tool_calls`` (OpenAI's ``{id, type: function, function: {name, arguments}}``,
    the arguments a JSON object in a string) as the agent's own calls; 400 naming the one at fault."""
    return [_tool_call(call, f"{where}.{j}") for j, call in enumerate(calls or [])]


def _tool_call(call: dict[str, Any], where: str) -> ToolCallRequest:
    function = call.get("function")
    if not (isinstance(function, dict) and isinstance(call.get("id"), str)
            and call.get("type", "function") == "function" and isinstance(function.get("name"), str)
            and isinstance(function.get("arguments", "{}"), str)):
        raise ApiError(400, "a tool call is {\"id\", \"type\": \"function\", \"function\": {\"name\", "
                            "\"arguments\"}}, its id, name and arguments strings", param=where)
    try:
        arguments = json.loads(function.get("arguments") or "{}")
    except ValueError:
        arguments = None
    except RecursionError:  # "[[[[...": past the parser's depth (it was a 500)
        raise ApiError(400, "a tool call's arguments are nested too deeply", param=f"{where}.function.arguments") \
            from None
    if not isinstance(arguments, dict):
        raise ApiError(400, "a tool call's arguments must be a JSON object, as a string",
                       param=f"{where}.function.arguments")
    if (depth := json_depth(arguments)) > MAX_ARGUMENTS_DEPTH:
        raise ApiError(400, f"a tool call's arguments nest {depth} deep; at most {MAX_ARGUMENTS_DEPTH} (objects "
                            "and lists in one another)", param=f"{where}.function.arguments")
    return ToolCallRequest(id=call["id"], name=function["name"], arguments=arguments)


def _assistant_calls(m: ChatMessage, i: int) -> list[ToolCallRequest]:
    """An assistant message's calls: its ``tool_calls``, and a legacy ``function_call`` as one more (its id made up
    from its place, the same in each request carrying it, so the chat's stored conversation is still found)."""
    calls = _tool_calls(m.tool_calls, f"messages.{i}.tool_calls")
    if m.function_call is not None:
        legacy = {"id": f"call_legacy_{i}", "function": m.function_call}
        calls.append(_tool_call(legacy, f"messages.{i}.function_call"))
    return calls


def _answered(m: ChatMessage, i: int, called: dict[str, str], legacy: list[str]) -> str:
    """The id of the call a tool message (``tool_call_id``) or a legacy function message (the last
    ``function_call`` before it) answers; 400 for one answering no earlier call, as OpenAI."""
    if m.role == "tool":
        if m.tool_call_id not in called:
            raise ApiError(400, f"messages.{i}: a tool message must answer a tool call of an earlier assistant "
                                f"message (tool_call_id {m.tool_call_id!r} is none of theirs)",
                           param=f"messages.{i}.tool_call_id")
        return m.tool_call_id
    if not legacy or (m.name is not None and called[legacy[-1]] != m.name):
        raise ApiError(400, f"messages.{i}: a function message must answer the function_call of an earlier assistant "
                            f"message{f' calling {m.name}' if m.name else ''}", param=f"messages.{i}.name")
    return legacy.pop()


def _messages(state: ServerState, messages: list[ChatMessage]) -> list[Message]:
    """The messages as stored (a developer message is a system one; an assistant's tool calls and the tool
    results sent back, from a client's own tool loop, as the agent's own; a legacy ``function_call`` and its
    ``function`` result as a tool call and its result; a user's or system message's ``name`` before its text),
    within the same limits as a conversation on the REST API: at most ``max_messages`` messages and
    ``max_history_chars`` characters in all (else 413)."""
    limits = state.settings
    if len(messages) > limits.max_messages:
        raise ApiError(413, f"messages: {len(messages)} messages; the limit is {limits.max_messages} "
                            "(HALGURU_SERVE_MAX_MESSAGES)", "too_many_messages", param="messages")
    out: list[Message] = []
    total = 0
    called: dict[str, str] = {}  # the tool calls asked for so far: id -> tool name
    legacy: list[str] = []  # the ids of legacy function_calls not answered yet
    for i, m in enumerate(messages):
        text = _text(m.content, f"messages.{i}.content", m.role)
        service.check_text(text, f"messages.{i}.content")
        calls = _assistant_calls(m, i) if m.role == "assistant" else []
        called.update((c.id, c.name) for c in calls)
        legacy += [c.id for c in calls if c.id == f"call_legacy_{i}"]
        total += len(text) + sum(len(json.dumps(c.arguments)) for c in calls)
        if total > limits.max_history_chars:
            raise ApiError(413, f"messages: more than {limits.max_history_chars} characters in all "
                                "(HALGURU_SERVE_MAX_HISTORY_CHARS)", "message_too_long", param="messages")
        if m.role in ("tool", "function"):  # as OpenAI: a result answers an earlier call, whose tool it names
            call_id = _answered(m, i, called, legacy)
            out.append(Message(role="tool", content=text, tool_call_id=call_id, name=called[call_id]))
            continue
        if m.name is not None and m.role != "assistant" and not is_blank(text):  # who says it, as the model reads it
            text = f"{m.name}: {text}"
        out.append(Message(role="system" if m.role == "developer" else m.role, content=text, tool_calls=calls))
    return out


@router.get("/models", response_model=ModelList)
def list_models(state: State, caller: Reader) -> ModelList:
    """Every agent the key may use, as an OpenAI model."""
    created = int(state.started)
    return ModelList(data=[ModelCard(id=n, created=created) for n, s in state.agents.items() if caller.allows(s)])


@router.get("/models/{model}", response_model=ModelCard, responses=responses(403, 404, model=OpenAIErrorBody))
def get_model(model: Annotated[str, Path(max_length=200)], state: State, caller: Reader) -> ModelCard:
    _agent(state, caller, model)
    return ModelCard(id=model, created=int(state.started))


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}},
                              "description": "a chat.completion, or chat.completion.chunk events when stream"},
                        **responses(400, 403, 404, 409, 413, 502, 503, model=OpenAIErrorBody)})
async def chat_completions(body: ChatRequest, request: Request, state: State, caller: Caller
                           ) -> Response | ChatCompletion:
    """Run the agent named by ``model`` on the conversation in ``messages``."""
    queued = await start(body, request, state, caller)
    head = {"id": f"chatcmpl-{queued.request_id}", "created": int(time.time()), "model": body.model}
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return service.EventStream(_chunks(state, queued.run.events(), head, queued.thread, usage), state,
                                   queued.reservation.release, queued.run.settle)
    answer = await queued.answer(request, state)
    message = ChoiceMessage(content=answer.content or (None if answer.calls else ""),
                            tool_calls=[ChoiceToolCall.model_validate(c) for c in answer.calls] or None)
    return ChatCompletion(**head, choices=[Choice(message=message, finish_reason=answer.finish)],
                          usage=_usage(answer.finished))


@dataclass
class Answer:
    """A whole run's answer: its text, the calls it leaves to the client (OpenAI's ``tool_calls``), its
    ``finish_reason`` and its ``run_finished`` (the token counts)."""

    content: str
    calls: list[dict[str, Any]]
    finish: str
    finished: Any


@dataclass
class Queued:
    """A completion's run, its queue place reserved: streamed as the endpoint writes it, or ``answer``ed whole."""

    served: ServedAgent
    messages: list[Message]
    thread: Thread
    reservation: Any
    run: service.UntilStarted
    request_id: str

    async def answer(self, request: Request, state: ServerState) -> Answer:
        """The run to its end, filed for the chat's next request; 400 for messages past the model's context,
        409 for a run paused for an approval, 502 for one that failed."""
        try:
            collected = await service.collect(request, state, self.run.events())
        finally:
            self.reservation.release()
            await self.run.settle()
        _, finished = service.summary(collected)
        too_long = _too_long(collected)
        if too_long is not None:  # the caller's messages, not the server: as OpenAI answers it
            raise ApiError(400, too_long, "context_length_exceeded", param="messages")
        # The same text a stream sends: every step's tokens (a team's lead and members, a workflow's answer).
        content = "".join(e.text for e in collected if isinstance(e, Token) and not e.parent_run_id)
        if finished.status == "paused":  # not a failure: a human decides, on halguru's own API
            await asyncio.to_thread(_file_paused, state, self.thread, content, collected)
            raise ApiError(409, paused_message(finished.run_id, collected), "run_paused", headers=NO_RETRY)
        if finished.status != "ok":  # it ran (its tools too): OpenAI's SDKs, which retry a 5xx, are told not to
            raise ApiError(502, f"the agent's run {finished.run_id} ended {finished.status}; see GET /v1/runs/"
                                f"{finished.run_id}", "run_failed", headers=NO_RETRY)
        replies = [e for e in collected if isinstance(e, ModelResult) and not e.parent_run_id]
        calls = openai_calls(collected)
        await asyncio.to_thread(self.thread.remember, state, content, as_requests(calls))
        return Answer(content, calls, finish_reason(replies[-1:], calls), finished)


async def start(body: ChatRequest, request: Request, state: ServerState, caller: Principal) -> Queued:
    """The run of a chat completion (or of a Responses request put as one), checked and queued: 4xx for a request
    it cannot run, before any run or store write."""
    served = _agent(state, caller, body.model)
    body.check_supported()
    output_schema = await asyncio.to_thread(body.output_schema, served)  # 400 for a schema it cannot follow
    tools = await asyncio.to_thread(client_tools, served, body.tools, body.tool_choice, body.parallel_tool_calls)
    messages = _messages(state, body.messages)
    results = _results(messages)
    if results and served.agent.driver is not None:  # its steps or members start from a user's message
        raise ApiError(400, f"messages: agent {served.name} is a {served.agent.driver.kind}, which runs its own tools; "
                            "the last message must be from the user", param="messages")
    text = "\n".join(f"{m.name}: {m.content}" for m in results) or _user_text(state, messages, body.messages[-1])
    sampling = body.sampling(served)
    # what each model call may write: the caller's max_tokens held to the agent's cap (a larger one, such as the
    # 4096 clients send by default, is no fault of the caller's unless the cap itself leaves the prompt no room)
    if served.context is not None and sampling.get("max_tokens", 0) >= served.context:
        raise ApiError(400, f"max_tokens: {body.tokens_asked()} leaves no room for the messages in the model's "
                            f"context of {served.context} tokens (agent {served.name}'s limits.max_tokens is "
                            f"{served.agent.spec.limits.max_tokens}); ask for fewer", param="max_tokens")
    reservation = service.reserve(state, served, caller)
    try:  # store writes: off the event loop
        thread = await asyncio.to_thread(open_thread, state, caller, served.name, messages, len(results) or 1)
    except BaseException:
        reservation.release()
        raise
    request_id = request.scope["state"]["request_id"]
    # A completion whose run never starts (its client gave up while it was queued) leaves no new conversation
    # behind, and a continued one as it was.
    run = service.UntilStarted(
        service.run_events(state, served, text, thread.conversation, request_id, reservation, caller.owner,
                           sampling, output_schema, tools, results or None),
        never=lambda: thread.never_ran(state))
    return Queued(served, messages, thread, reservation, run, request_id)


def _results(messages: list[Message]) -> list[Message]:
    """The client's tool results the request ends with (its tools' calls answered): the run starts with them."""
    at = len(messages)
    while at > 0 and messages[at - 1].role == "tool":
        at -= 1
    return messages[at:]


def _user_text(state: ServerState, messages: list[Message], sent: ChatMessage) -> str:
    """The run's input: the request's last message, a user's, not blank and within the input limits, which count
    what ``sent`` holds (its ``name``, put before the text for the model, is not the user's to count)."""
    if messages[-1].role != "user":
        raise ApiError(400, "messages: the last message must be from the user, or the results of the tool calls "
                            f"the last answer asked for; {_why_not_last(messages[-1])}", param="messages")
    text = messages[-1].content
    if is_blank(text):  # as POST /v1/conversations/{id}/messages answers "   ": 422, no run
        raise ApiError(422, f"messages: the last user message: {BLANK_MESSAGE}", param="messages")
    where = f"messages.{len(messages) - 1}.content"
    service.check_input(state, _text(sent.content, where, sent.role) if sent.name else text, where)
    return text


def _why_not_last(message: Message) -> str:
    """Why a request may not end with ``message`` (not a user's, nor a tool result), and what to send instead."""
    if message.tool_calls:
        ids = ", ".join(c.id for c in message.tool_calls)
        return f"it asks for tool calls: send its tool calls' results (role: tool, tool_call_id {ids}) after it"
    if message.role == "assistant":  # a prefill: the model's own answer started by the client
        return ("it is the assistant's, and an agent does not continue a prefilled answer (its run answers the "
                "user's message afresh): put that text in the user's message, or leave it out")
    return ("it is a system (or developer) message after the user's, which an agent's run cannot place after its "
            "input: send it before the last user message")


def paused_message(run_id: str, events: list[Any]) -> str:
    """What a client is told of a run paused for a human's approval: which call waits, and how to go on."""
    call = next((e for e in reversed(events) if e.type == "approval_requested"), None)
    what = f"its call of {call.name} waits" if call is not None else "it waits"
    return (f"the agent's run {run_id} paused: {what} for a human's approval, so there is no answer yet; approve "
            f"it with POST /v1/runs/{run_id}/approve or refuse it with POST /v1/runs/{run_id}/reject, which "
            "answer with the rest of the run")


def _file_paused(state: ServerState, thread: Thread, content: str, events: list[Any]) -> None:
    """A paused reply that also called the client's tools: once decided, its continuation leaves them to the
    client (the approve answer's ``tool_calls``, ``client: true``), whose next request, with their results,
    continues this conversation, as it would without the pause."""
    left = left_once_decided(events)
    if left:
        thread.remember(state, content, left)


def finish_reason(last: list[Any], calls: list[Any]) -> str:
    """OpenAI's finish_reason: "tool_calls" when the answer leaves ``calls`` to the client, "length" when the last
    model call of the run was cut at max_tokens."""
    if calls:
        return "tool_calls"
    return "length" if last and last[-1].finish_reason == "length" else "stop"


def _usage(finished: Any) -> CompletionUsage:
    return CompletionUsage(prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens,
                           total_tokens=finished.prompt_tokens + finished.completion_tokens)


async def _chunks(state: ServerState, events: AsyncIterator[Any], head: dict[str, Any], thread: Thread,
                  usage: bool) -> AsyncIterator[str]:
    """The run as chat.completion.chunk events. ``usage`` (``stream_options.include_usage``): each chunk has a
    null ``usage``, and the token counts come last in a chunk of their own with no choices, as OpenAI sends them."""
    watch = Watch()
    answer: list[str] = []  # what the client is sent: its next request carries it back
    calls: list[dict[str, Any]] = []  # the tool calls left to the client, as sent
    answered: list[bool] = []

    def data(value: dict[str, Any]) -> str:
        return f"data: {json.dumps(value)}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return data({**head, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                     **({"usage": None} if usage else {})})

    def error(kind: str, message: str, retry_after: int | None = None) -> str:
        return data({"error": openai_error(500, message, kind)})

    def render(event: Any) -> str | None:
        watch.see(event)
        if event.type == "token":
            answer.append(event.text)
            return chunk({"content": event.text})
        if event.type == "tool_call" and event.client and not event.parent_run_id:  # one delta per call
            calls.extend(openai_calls([event]))
            return chunk({"tool_calls": [{"index": len(calls) - 1, **calls[-1]}]})
        if event.type == "model_result" and event.tool_calls:
            return chunk({"content": ""})  # its own tools run server-side; the client sees only the answer
        if event.type == "run_finished":
            if watch.too_long:
                return data({"error": openai_error(400, watch.too_long[0], "context_length_exceeded", "messages")})
            if event.status == "paused":
                return data({"error": openai_error(409, paused_message(event.run_id, watch.approvals), "run_paused")})
            if event.status != "ok":  # the details are in the run's trace, for the key's owner
                return error("run_failed", f"the agent's run {event.run_id} ended {event.status}")
            answered.append(True)
            counts = data({**head, "object": "chat.completion.chunk", "choices": [],
                           "usage": _usage(event).model_dump()}) if usage else ""
            return chunk({}, finish_reason(watch.last, calls)) + counts + "data: [DONE]\n\n"
        return None

    yield chunk({"role": "assistant", "content": ""})
    async for text in service.sse_body(state, events, render, error):
        if answered:  # filed before [DONE] goes out: the client's next request may follow at once
            answered.clear()
            await asyncio.to_thread(thread.remember, state, "".join(answer), as_requests(calls))
        await watch.file_paused(state, thread, "".join(answer))
        yield text


@dataclass
class Watch:
    """What a streamed run's events say of how it ends: its last top-level model_result, the approvals it asked
    for, an error saying the messages do not fit the model's context, the events a paused run is filed with."""

    last: list[Any] = field(default_factory=list)
    approvals: list[Any] = field(default_factory=list)
    too_long: list[str] = field(default_factory=list)
    paused: list[Any] = field(default_factory=list)

    def see(self, event: Any) -> None:
        if (message := _too_long([event])) is not None:
            self.too_long.append(message)
        if event.type == "approval_requested":
            self.approvals.append(event)
        if event.type == "model_result" and not event.parent_run_id:
            self.last[:] = [event]
        if event.type == "run_finished" and event.status == "paused":
            self.paused.extend([*self.last, *self.approvals])

    async def file_paused(self, state: ServerState, thread: Thread, content: str) -> None:
        """Once the run paused: its reply's calls of the client's tools, filed for once it is decided."""
        if self.paused:
            await asyncio.to_thread(_file_paused, state, thread, content, self.paused)
            self.paused.clear()


def _too_long(events: list[Any]) -> str | None:
    """The message of a run's error saying its prompt does not fit the model's context (kind ``context``)."""
    return next((e.message for e in events if e.type == "error" and e.fatal and e.kind == "context"), None)
