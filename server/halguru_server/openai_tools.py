"""The OpenAI endpoint's client-side tools: functions the client runs, offered to the agent's model beside its own.

A request's ``tools`` and ``tool_choice`` become the run's ``ClientTools`` (checked here, each fault a 400 naming
the field); a run that ends calling them answers with OpenAI's ``tool_calls`` (``finish_reason: "tool_calls"``),
and the client's next request, ending with its ``role: tool`` results, continues it (``openai_api``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag

from halguru.agents.client_tools import ClientTools
from halguru.agents.events import ToolCall
from halguru.models.base import ToolCallRequest, ToolSpec
from halguru_server.agents import ServedAgent
from halguru_server.errors import ApiError

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's
MAX_TOOLS = 128  # OpenAI's


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI adds fields; only these change what the model sees
    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, _ and -, at most 64")
    description: str = Field(default="", max_length=4000)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}},
                                       description="a JSON Schema object; its properties are the arguments")
    strict: StrictBool | None = Field(default=None, description="the arguments always match parameters here "
                                                               "on llama.cpp models, strict or not")


class ClientTool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    """``{"type": "function", "function": {"name": ...}}``: the model calls this function of ``tools``."""

    type: Literal["function"] = "function"
    function: NamedFunction


class AllowedTools(BaseModel):
    mode: Literal["auto", "required"] = Field(description="required: the first model call calls one of them")
    tools: list[NamedToolChoice] = Field(min_length=1, max_length=MAX_TOOLS)


class AllowedToolsChoice(BaseModel):
    """``{"type": "allowed_tools", "allowed_tools": {"mode", "tools": [{"type": "function", "function": {"name"}}]}}``:
    only these of ``tools`` are offered (a client keeps its whole list, for the model's cache, and narrows it)."""

    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


CHOICES = ("none, auto, required, {\"type\": \"function\", \"function\": {\"name\"}} or "
           "{\"type\": \"allowed_tools\", \"allowed_tools\": {\"mode\", \"tools\"}}")


def _choice_kind(value: Any) -> str | None:
    """Which object a tool_choice is, by its ``type`` (a named function's may leave it out), as the name of its
    model (a union member's name, which error messages leave out of the field they name)."""
    kind = value.get("type", "function") if isinstance(value, dict) else getattr(value, "type", None)
    return {"function": "NamedToolChoice", "allowed_tools": "AllowedToolsChoice"}.get(kind) \
        if isinstance(kind, str) else None


# by its type, so that a wrong field of one is reported as that one's ("allowed_tools.mode: 'auto' or
# 'required'"), not as the other's ("type: 'function'") or the strings' ("'none', 'auto' or 'required'")
ToolChoiceObject = Annotated[
    Annotated[NamedToolChoice, Tag("NamedToolChoice")] | Annotated[AllowedToolsChoice, Tag("AllowedToolsChoice")],
    Discriminator(_choice_kind, custom_error_type="tool_choice", custom_error_message=f"it is none of {CHOICES}")]


def client_tools(served: ServedAgent, tools: list[ClientTool] | None,
                 choice: str | NamedToolChoice | AllowedToolsChoice | None, parallel: bool | None
                 ) -> ClientTools | None:
    """The run's client tools, or None when the request sends none; 400 for tools the run cannot offer: a name
    twice or one of the agent's own tools, parameters that are not a JSON Schema object or that the agent's
    model cannot decode under, an agent with a team or workflow, a choice naming no tool sent."""
    named = choice.function.name if isinstance(choice, NamedToolChoice) else None
    if not tools:
        if isinstance(choice, AllowedToolsChoice):  # it narrows the request's tools: with none, it names none
            _not_sent([t.function.name for t in choice.allowed_tools.tools])
        if named is not None or choice == "required":
            raise ApiError(400, "tool_choice: it asks for a call of the request's tools, and it sends none; send "
                                "tools or leave tool_choice out", param="tool_choice")
        return None
    from halguru_server.openai_schemas import check_json_schema, model_check

    driver = served.agent.driver
    if driver is not None:
        raise ApiError(400, f"tools: agent {served.name} is a {driver.kind}, whose steps run their own agents' tools; "
                            "client-side tools go to a plain agent", param="tools")
    # the agent's own, and its MCP servers' that an allow-list names (the others are known once a run starts them:
    # one named as a client's tool is not offered, which the run's trace says)
    own = {*served.agent.tools, *(name for server in served.agent.spec.mcp for name in server.tools or ())}
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name, where = tool.function.name, f"tools.{i}.function"
        if name in own:
            raise ApiError(400, f"{where}.name: {name!r} is a tool of agent {served.name}'s own; rename the "
                                "client's", param=f"{where}.name")
        if name in seen:
            raise ApiError(400, f"{where}.name: {name!r} is sent twice", param=f"{where}.name")
        seen.add(name)
        schema = tool.function.parameters
        if schema.get("type", "object") != "object":
            raise ApiError(400, f"{where}.parameters: a function's parameters are a JSON Schema of type object",
                           param=f"{where}.parameters")
        where_schema = f"{where}.parameters"
        model_check(served, served.check_schema_size, schema, where_schema)
        check_json_schema(schema, where_schema)
        model_check(served, served.check_schema, schema, where_schema)
    if named is not None and named not in seen:
        raise ApiError(400, f"tool_choice: {named!r} is none of the request's tools", param="tool_choice")
    offered = seen
    if isinstance(choice, AllowedToolsChoice):
        offered = {t.function.name for t in choice.allowed_tools.tools}
        _not_sent(sorted(offered - seen))
    specs = tuple(ToolSpec(name=t.function.name, description=t.function.description,
                           parameters=t.function.parameters) for t in tools if t.function.name in offered)
    mode = named or (choice if isinstance(choice, str) else None) or \
        (choice.allowed_tools.mode if isinstance(choice, AllowedToolsChoice) else "auto")
    return ClientTools(specs, mode, parallel is not False)


def _not_sent(unknown: list[str]) -> None:
    """400 naming the first of an allowed_tools choice's tools that the request does not send."""
    if unknown:
        raise ApiError(400, f"tool_choice.allowed_tools.tools: {unknown[0]!r} is none of the request's tools",
                       param="tool_choice.allowed_tools.tools")


def openai_calls(events: list[Any]) -> list[dict[str, Any]]:
    """The run's calls left to the client, as OpenAI's ``tool_calls`` (arguments as a JSON string)."""
    return [{"id": e.call_id, "type": "function", "function": {"name": e.name, "arguments": json.dumps(e.arguments)}}
            for e in events if isinstance(e, ToolCall) and e.client and not e.parent_run_id]


def left_once_decided(events: list[Any]) -> list[ToolCallRequest]:
    """The client's calls of a run paused for approval: its continuation leaves them to the client once the
    paused call is decided (``approval_requested``'s ``client_calls``, in the order the model gave them)."""
    asked = next((e for e in reversed(events) if e.type == "approval_requested" and not e.parent_run_id), None)
    reply = next((e for e in reversed(events) if e.type == "model_result" and not e.parent_run_id), None)
    if asked is None or reply is None or not asked.client_calls:
        return []
    return [ToolCallRequest(id=c["id"], name=c["name"], arguments=c["arguments"]) for c in reply.tool_calls
            if c["id"] in asked.client_calls]


def as_requests(calls: list[dict[str, Any]]) -> list[ToolCallRequest]:
    """OpenAI's ``tool_calls`` as the client will send them back (what its chat's next key hashes)."""
    return [ToolCallRequest(id=c["id"], name=c["function"]["name"], arguments=json.loads(c["function"]["arguments"]))
            for c in calls]
