"""The Responses API's request, put as a chat completion's, and its answer, put as a ``response`` object.

A request's ``input`` (a string, or message, ``function_call`` and ``function_call_output`` items) becomes the
chat messages ``openai_api`` runs: the messages of the response named by ``previous_response_id`` first (its
stored chain's), then the new items. ``instructions`` come first as a system message, for this request only
(as OpenAI: those of an earlier response are not carried over). Each fault is a 400 naming the field
(``input.2.content.0.type``), as OpenAI names it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from halguru_server.errors import ApiError, describe, field_of
from halguru_server.openai_schemas import ChatMessage, ChatRequest
from halguru_server.openai_tools import MAX_TOOLS

# Fields accepted and ignored: they change nothing in the answer (OpenAI's billing tier and caching, an end user's
# id for abuse reports; ``truncation``: halguru always leaves older turns out of a context they do not fit).
IGNORED_FIELDS = ("service_tier", "prompt_cache_key", "safety_identifier", "truncation")
INPUT_ROLES = ("user", "system", "developer", "assistant")


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # a field not typed here nor in IGNORED_FIELDS is a 400 naming it
    model: str = Field(min_length=1, max_length=200, description="the agent's name")
    input: str | list[Any] = Field(description="a user's text, or message, function_call and "
                                                          "function_call_output items")
    instructions: str | None = Field(default=None, description="a system message for this request only")
    previous_response_id: str | None = Field(default=None, max_length=200, description="continue that response's "
                                                                                       "conversation")
    store: StrictBool = Field(default=True, description="false: the response cannot be retrieved or continued")
    stream: StrictBool = False
    max_output_tokens: StrictInt | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2, strict=True)
    top_p: float | None = Field(default=None, ge=0, le=1, strict=True)
    metadata: dict[str, str] | None = Field(default=None, max_length=16, description="stored and echoed back")
    user: str | None = Field(default=None, max_length=512)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOOLS,
                                               description="function tools, which the client runs")
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    text: dict[str, Any] | None = Field(default=None, description="{format: {type: text | json_object | "
                                                                  "json_schema, name, schema, strict}}")

    def check_supported(self) -> None:
        """400 for a field this endpoint does not type and does not knowingly ignore (null, [] or {}: not sent,
        as clients that write every field they know send ``include: []``)."""
        unknown = [k for k, v in (self.model_extra or {}).items()
                   if k not in IGNORED_FIELDS and v not in (None, [], {})]  # an empty list asks for nothing
        if unknown:
            raise ApiError(400, f"{unknown[0]}: not supported by this endpoint; leave it out (it ignores only "
                                f"{', '.join(IGNORED_FIELDS)})", param=unknown[0])
        for key, value in (self.metadata or {}).items():  # OpenAI's limits
            if len(key) > 64 or len(value) > 512:
                raise ApiError(400, "metadata: keys of at most 64 characters, values of at most 512",
                               param=f"metadata.{key[:64]}")


def _text(content: Any, where: str, role: str) -> str:
    """A message item's text: its string, or its text parts joined (input_text; output_text and refusal in an
    assistant's, as a response's own output sent back)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise ApiError(400, f"{where}: a message's content is a string or a list of input_text parts", param=where)
    kinds = ("input_text", "output_text", "refusal") if role == "assistant" else ("input_text",)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise ApiError(400, f"{where}.{j}.type: content part type {kind!r} is not supported; send "
                                f"{' or '.join(kinds)}", param=f"{where}.{j}.type")
        value = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(value, str):
            raise ApiError(400, f"{where}.{j}: the {kind} part's text must be a string", param=f"{where}.{j}")
        parts.append(value)
    return "".join(parts)


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{where}.{key}: a {item.get('type')} item's {key} must be a non-empty string",
                       param=f"{where}.{key}")
    return value


def _arguments(item: dict[str, Any], where: str) -> str:
    """A function_call item's arguments: a JSON object, as a string (as the response's own output has them)."""
    arguments = item.get("arguments", "{}")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise ApiError(400, f"{where}.arguments: a function_call's arguments are a JSON object, as a string",
                       param=f"{where}.arguments")
    return str(arguments)


def input_messages(items: str | list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The input as chat messages, and where each came from (``input.3``): consecutive ``function_call`` items
    and an assistant message right before them are one assistant message with ``tool_calls``, as a chat
    completion's answer is."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}], ["input"]
    if not items:
        raise ApiError(400, "input: send a text or at least one item", param="input")
    out: list[dict[str, Any]] = []
    origins: list[str] = []
    for i, item in enumerate(items):
        where = f"input.{i}"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where}: an item is an object (a message, function_call or function_call_output)",
                           param=where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in INPUT_ROLES:
                raise ApiError(400, f"{where}.role: {role!r} is none of {', '.join(INPUT_ROLES)}",
                               param=f"{where}.role")
            out.append({"role": role, "content": _text(item.get("content"), f"{where}.content", role)})
            origins.append(where)
        elif kind == "function_call":
            call = {"id": _string(item, "call_id", where), "type": "function",
                    "function": {"name": _string(item, "name", where), "arguments": _arguments(item, where)}}
            if out and out[-1]["role"] == "assistant":
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
                origins.append(where)
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str | list):
                raise ApiError(400, f"{where}.output: a function_call_output's output is a string or a list of "
                                    "input_text parts", param=f"{where}.output")
            text = output if isinstance(output, str) else _text(output, f"{where}.output", "user")
            out.append({"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": text})
            origins.append(where)
        else:
            raise ApiError(400, f"{where}.type: item type {kind!r} is not supported; send message, function_call "
                                "or function_call_output items", param=f"{where}.type")
    return out, origins


def _tools(body: ResponsesRequest) -> tuple[list[dict[str, Any]] | None, Any]:
    """``tools`` and ``tool_choice`` as a chat completion's (``{type: function, function: {...}}``)."""
    tools = None
    if body.tools is not None:
        tools = []
        for i, tool in enumerate(body.tools):
            if tool.get("type") != "function":
                raise ApiError(400, f"tools.{i}.type: {tool.get('type')!r} tools are not offered here; send function "
                                    "tools, which the client runs (the agent's own tools run on the server)",
                               param=f"tools.{i}.type")
            tools.append({"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}})
    choice = body.tool_choice
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools" and isinstance(choice.get("tools"), list):
        # as the chat completion's, its tools in its own shape: {"type": "function", "name"}
        named = [{"type": t.get("type"), "function": {"name": t.get("name")}} if isinstance(t, dict) else t
                 for t in choice["tools"]]
        choice = {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode"), "tools": named}}
    elif isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise ApiError(400, "tool_choice: none, auto, required, {\"type\": \"function\", \"name\": ...} or "
                                "{\"type\": \"allowed_tools\", \"mode\", \"tools\"}", param="tool_choice")
        choice = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None and choice not in ("none", "auto", "required"):
        raise ApiError(400, f"tool_choice: {choice!r} is none of none, auto, required", param="tool_choice")
    return tools, choice


def _format(body: ResponsesRequest) -> dict[str, Any] | None:
    """``text.format`` as a chat completion's ``response_format``."""
    if body.text is None or body.text.get("format") is None:
        return None
    form = body.text["format"]
    kind = form.get("type") if isinstance(form, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema" or not isinstance(form.get("schema"), dict):
        raise ApiError(400, "text.format: {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": "
                            "\"json_schema\", \"name\", \"schema\": {...}}", param="text.format")
    return {"type": "json_schema", "json_schema": {k: form[k] for k in ("name", "schema", "strict") if k in form}}


def chat_request(body: ResponsesRequest, earlier: list[dict[str, Any]]) -> tuple[ChatRequest, list[str], int]:
    """The request as a chat completion's, where each of its messages came from, and how many of them lead the
    transcript a stored response keeps (the earlier response's and the input: not this request's instructions)."""
    new, origins = input_messages(body.input)
    head = [{"role": "system", "content": body.instructions}] if body.instructions else []
    messages = [*head, *earlier, *new]
    tools, choice = _tools(body)
    fields: dict[str, Any] = {"model": body.model, "messages": messages, "stream": body.stream,
                              "temperature": body.temperature, "top_p": body.top_p,
                              "max_completion_tokens": body.max_output_tokens, "tools": tools,
                              "tool_choice": choice, "parallel_tool_calls": body.parallel_tool_calls,
                              "response_format": _format(body)}
    where = [*(["instructions"] * len(head)), *(["previous_response_id"] * len(earlier)), *origins]
    try:
        chat = ChatRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise renamed(_validation(exc), where) from None
    return chat, where, len(head)


def _validation(exc: ValidationError) -> ApiError:
    """As a chat completion's own body is refused: of a union's members, the error of the one the value is of."""
    errors = exc.errors()
    return ApiError(400, describe(errors), param=field_of(errors))


_RENAMES = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens",
            "response_format": "text.format", "messages": "input", "tool_choice.allowed_tools": "tool_choice"}
_CHAT_FIELD = re.compile(r"^(?:messages\.(\d+)((?:\.\w+)*)|tools\.(\d+)\.function((?:\.\w+)*)|"
                         r"tool_choice\.allowed_tools\.tools\.(\d+)\.function|"
                         r"max_tokens|max_completion_tokens|response_format|tool_choice\.allowed_tools|messages)\b")
_NOT_THE_USERS = "the last message must be from the user, or the results of the tool calls the last answer asked for"


def renamed(exc: ApiError, where: list[str]) -> ApiError:
    """A chat completion's refusal, naming the Responses request's field instead (``messages.3`` is where that
    message came from, ``input.1``; ``tools.0.function.name`` is ``tools.0.name``), in its param and message."""

    def field(match: re.Match[str]) -> str:
        if match[1] is not None:
            origin = where[int(match[1])] if int(match[1]) < len(where) else "input"
            return origin + (match[2] if match[2] == ".content" and origin.startswith("input.") else "")
        if match[3] is not None:
            return f"tools.{match[3]}{match[4]}"
        if match[5] is not None:  # an allowed tool is {"type": "function", "name"} here
            return f"tool_choice.tools.{match[5]}"
        return _RENAMES[match[0]]

    if exc.param is None:
        return exc
    message = _CHAT_FIELD.sub(field, exc.message).replace(
        _NOT_THE_USERS, "the input must end with a user message, or with the function_call_output items answering "
                        "the calls of the response it continues")
    return ApiError(exc.status, message, exc.type, exc.headers, _CHAT_FIELD.sub(field, exc.param))


def response_object(response_id: str, body: ResponsesRequest, status: str, output: list[dict[str, Any]],
                    usage: dict[str, Any] | None, created: float | None = None) -> dict[str, Any]:
    """A ``response`` as OpenAI writes it (``output_text`` is the SDK's own sum of the output's text)."""
    return {
        "id": response_id, "object": "response", "created_at": int(created or time.time()), "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.instructions, "max_output_tokens": body.max_output_tokens, "model": body.model,
        "output": output, "parallel_tool_calls": body.parallel_tool_calls is not False,
        "previous_response_id": body.previous_response_id, "reasoning": {"effort": None, "summary": None},
        "store": body.store, "temperature": body.temperature, "top_p": body.top_p,
        "text": body.text or {"format": {"type": "text"}}, "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [], "truncation": "disabled", "usage": usage, "user": body.user,
        "metadata": body.metadata or {},
    }


def usage_of(finished: Any) -> dict[str, Any]:
    return {"input_tokens": finished.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": finished.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": finished.prompt_tokens + finished.completion_tokens}


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(item_id: str, call: dict[str, Any]) -> dict[str, Any]:
    """A chat completion's tool call as a ``function_call`` output item."""
    return {"type": "function_call", "id": item_id, "call_id": call["id"], "name": call["function"]["name"],
            "arguments": call["function"]["arguments"], "status": "completed"}


def answer_message(content: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer as the chat message its transcript keeps (what a chat completion's client sends back)."""
    return {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}


def earlier_messages(stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A stored transcript, checked as the chat messages it was."""
    return [ChatMessage.model_validate(m).model_dump(exclude_none=True) for m in stored]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
