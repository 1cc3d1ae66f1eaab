"""OpenAI-compatible endpoints: the model name is the agent name, so existing clients and SDKs work unchanged.

Each request carries the whole chat; the earlier messages become a stored
conversation's history and the last user message is the run's input, so the
request is traced like any other run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from halguru.agents.events import ModelResult, Token
from halguru.models.base import Message
from halguru.printable import is_blank
from halguru_server import service
from halguru_server.api import SSE_EVENT
from halguru_server.errors import ApiError, responses
from halguru_server.identity.guards import require
from halguru_server.schemas import BLANK_MESSAGE
from halguru_server.state import Principal, ServerState, agent_for, state_of

router = APIRouter(prefix="/v1", tags=["openai"], responses=responses(401, 422))
Caller = Annotated[Principal, Depends(require("chat:use"))]
Reader = Annotated[Principal, Depends(require("agents:read"))]
State = Annotated[ServerState, Depends(state_of)]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None


class JsonSchemaFormat(BaseModel):
    name: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(BaseModel):
    """OpenAI's structured output: ``json_object`` or ``json_schema`` becomes the run's output schema (constrained
    decoding where the model provider can, as a workflow step's ``output:``)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


# The fields OpenAI's API types are typed here too, strictly ("yes" is not a boolean, "10" not a number), so a
# client's mistake is a 422 naming the field, not a request answered as if it had sent something else.
class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send many optional fields
    model: str = Field(min_length=1, description="the agent's name")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    n: StrictInt | None = Field(default=None, description="1: one choice per request")
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, gt=0, le=1, strict=True)
    max_tokens: StrictInt | None = Field(default=None, gt=0)
    max_completion_tokens: StrictInt | None = Field(default=None, gt=0)
    seed: StrictInt | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, description="not supported: agents bring their tools")
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None


def _output_schema(body: ChatRequest) -> dict[str, Any] | None:
    form = body.response_format
    if form is None or form.type == "text":
        return None
    if form.type == "json_object":
        return {"type": "object"}
    if form.json_schema is None:
        raise ApiError(422, "response_format: json_schema needs its json_schema: {name, schema}")
    return form.json_schema.schema_


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "halguru"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: str


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise ApiError(400, f"content part type {part.get('type')!r} is not supported; send text")
        if not isinstance(part.get("text"), str):  # a number or an object was echoed back as its repr
            raise ApiError(400, "a text content part's 'text' must be a string")
        parts.append(part["text"])
    return "".join(parts)


def _messages(state: ServerState, messages: list[ChatMessage]) -> list[tuple[str, str]]:
    """(role, text) of each non-tool message, within the same limits as a conversation on the REST API:
    at most ``max_messages`` messages and ``max_history_chars`` characters in all (else 413)."""
    limits = state.settings
    if len(messages) > limits.max_messages:
        raise ApiError(413, f"messages: {len(messages)} messages; the limit is {limits.max_messages} "
                            "(HALGURU_SERVE_MAX_MESSAGES)", "too_many_messages")
    out: list[tuple[str, str]] = []
    total = 0
    for i, m in enumerate(messages):
        if m.role == "tool":
            continue
        text = _text(m.content)
        service.check_text(text, f"messages.{i}.content")
        total += len(text)
        if total > limits.max_history_chars:
            raise ApiError(413, f"messages: more than {limits.max_history_chars} characters in all "
                                "(HALGURU_SERVE_MAX_HISTORY_CHARS)", "message_too_long")
        out.append((m.role, text))
    return out


@router.get("/models", response_model=ModelList)
def list_models(state: State, caller: Reader) -> ModelList:
    """Every agent the key may use, as an OpenAI model."""
    created = int(state.started)
    return ModelList(data=[ModelCard(id=n, created=created) for n, s in state.agents.items() if caller.allows(s)])


@router.get("/models/{model}", response_model=ModelCard, responses=responses(403, 404))
def get_model(model: Annotated[str, Path(max_length=200)], state: State, caller: Reader) -> ModelCard:
    agent_for(state, caller, model)
    return ModelCard(id=model, created=int(state.started))


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: {"content": {"text/event-stream": {"schema": SSE_EVENT}},
                              "description": "a chat.completion, or chat.completion.chunk events when stream"},
                        **responses(400, 403, 404, 413, 502, 503)})
async def chat_completions(body: ChatRequest, request: Request, state: State, caller: Caller
                           ) -> Response | ChatCompletion:
    """Run the agent named by ``model`` on the conversation in ``messages``."""
    served = agent_for(state, caller, body.model)
    if body.tools or body.tool_choice == "required" or isinstance(body.tool_choice, dict):
        raise ApiError(400, "tools: client-side tools are not supported; the agent's own tools are used")
    if body.n is not None and body.n != 1:
        raise ApiError(400, f"n: {body.n} choices asked; an agent answers with one (send n=1 or leave it out)")
    output_schema = _output_schema(body)
    messages = _messages(state, body.messages)
    if not messages or messages[-1][0] != "user":
        raise ApiError(400, "messages: the last message must be from the user")
    history = [Message(role="system" if role == "developer" else role, content=text)
               for role, text in messages[:-1] if role != "tool"]
    text = messages[-1][1]
    if is_blank(text):  # as POST /v1/conversations/{id}/messages answers "   ": 422, no run
        raise ApiError(422, f"messages: the last user message: {BLANK_MESSAGE}")
    service.check_input(state, text)
    sampling = {k: v for k, v in {"temperature": body.temperature, "top_p": body.top_p, "seed": body.seed,
                                  "max_tokens": body.max_completion_tokens or body.max_tokens}.items()
                if v is not None}
    if served.context is not None and sampling.get("max_tokens", 0) >= served.context:
        raise ApiError(400, f"max_tokens: {sampling['max_tokens']} leaves no room for the messages in the model's "
                            f"context of {served.context} tokens; ask for fewer")
    reservation = service.reserve(state, served, caller)
    try:
        conversation = (await asyncio.to_thread(service.new_conversation, state, caller, served.name, text[:80],
                                                history))["id"]  # a write: off the event loop
    except BaseException:
        reservation.release()
        raise
    request_id = request.scope["state"]["request_id"]
    # A completion whose run never starts (its client gave up while it was queued) leaves no conversation behind.
    run = service.UntilStarted(
        service.run_events(state, served, text, conversation, request_id, reservation, caller.owner, sampling,
                           output_schema),
        never=lambda: state.store.delete_conversation(conversation))
    completion_id = f"chatcmpl-{request_id}"
    created = int(time.time())
    if body.stream:
        return service.EventStream(_chunks(state, run.events(), completion_id, created, body.model), state,
                                   reservation.release, run.settle)
    try:
        collected = await service.collect(request, state, run.events())
    finally:
        reservation.release()
        await run.settle()
    _, finished = service.summary(collected)
    if finished.status != "ok":
        raise ApiError(502, f"the agent's run {finished.run_id} ended {finished.status}; see GET /v1/runs/"
                            f"{finished.run_id}", "run_failed")
    # The same text a stream sends: every step's tokens (a team's lead and members, a workflow's answer).
    content = "".join(e.text for e in collected if isinstance(e, Token) and not e.parent_run_id)
    results = [e for e in collected if isinstance(e, ModelResult) and not e.parent_run_id]
    return ChatCompletion(
        id=completion_id, created=created, model=body.model,
        choices=[Choice(message=ChoiceMessage(content=content), finish_reason=_finish(results[-1:]))],
        usage=CompletionUsage(prompt_tokens=finished.prompt_tokens, completion_tokens=finished.completion_tokens,
                              total_tokens=finished.prompt_tokens + finished.completion_tokens))


def _finish(last: list[Any]) -> str:
    """OpenAI's finish_reason: "length" when the last model call of the run was cut at max_tokens."""
    return "length" if last and last[-1].finish_reason == "length" else "stop"


async def _chunks(state: ServerState, events: AsyncIterator[Any], completion_id: str, created: int, model: str
                  ) -> AsyncIterator[str]:
    last: list[Any] = []  # the run's last top-level model_result

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(data)}\n\n"

    def error(kind: str, message: str) -> str:
        return f"data: {json.dumps({'error': {'type': kind, 'message': message}})}\n\n"

    def render(event: Any) -> str | None:
        if event.type == "model_result" and not event.parent_run_id:
            last[:] = [event]
        if event.type == "token":
            return chunk({"content": event.text})
        if event.type == "model_result" and event.tool_calls:
            return chunk({"content": ""})  # tool rounds run server-side; the client sees only the answer
        if event.type == "run_finished":
            if event.status != "ok":  # the details are in the run's trace, for the key's owner
                return error("run_failed", f"the agent's run {event.run_id} ended {event.status}")
            return chunk({}, _finish(last), usage={"prompt_tokens": event.prompt_tokens,
                                            "completion_tokens": event.completion_tokens,
                                            "total_tokens": event.prompt_tokens + event.completion_tokens}
                         ) + "data: [DONE]\n\n"
        return None

    yield chunk({"role": "assistant", "content": ""})
    async for text in service.sse_body(state, events, render, error):
        yield text
