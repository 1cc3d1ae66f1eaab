"""Typed events: everything that happens in a run.

``halguru.agents.runtime.run`` yields these; the CLI printer, the trace
recorder, the TUI and the server's SSE stream all consume the same objects.
``Event`` is a discriminated union on ``type``, so a stored event (JSON) parses
back into its class with ``parse_event``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class BaseEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    run_id: str = ""
    seq: int = 0
    ts: float = Field(default_factory=time.time)
    step: int = 0
    # Set on the events of a sub-run (a specialist answering ``ask_<agent>``, a workflow's agent step): the run
    # that started it. Its events share the top-level run's trace (one numbering) and name their own sub-run id.
    parent_run_id: str = ""


class RunStarted(BaseEvent):
    type: Literal["run_started"] = "run_started"
    agent: str
    model: str
    input: str
    conversation_id: str
    metadata: dict[str, Any] = {}  # caller's context, e.g. serve mode's request id


class ModelCall(BaseEvent):
    """A request to the model is about to be sent (the messages as rendered)."""

    type: Literal["model_call"] = "model_call"
    model: str
    messages: list[dict[str, Any]]
    tools: list[str] = []
    settings: dict[str, Any] = {}


class Token(BaseEvent):
    """A piece of streamed answer text. Not stored one by one: ModelResult holds the whole text."""

    type: Literal["token"] = "token"
    text: str


class ModelResult(BaseEvent):
    """The model finished one call: its raw output, parsed tool calls and usage."""

    type: Literal["model_result"] = "model_result"
    text: str
    tool_calls: list[dict[str, Any]] = []
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    finish_reason: str = "stop"
    format_errors: int = 0
    cut_by: str | None = None  # finish_reason "length": the max_tokens that cut it (the run's or agent.yaml's)
    # The oldest messages of model_call's list the model did not read: the conversation outgrew its context.
    dropped_messages: int = 0


class ToolCall(BaseEvent):
    type: Literal["tool_call"] = "tool_call"
    call_id: str
    name: str
    arguments: dict[str, Any]
    client: bool = False  # a tool of the caller's (the OpenAI endpoint's ``tools``): the run ends, it runs it


class ToolResult(BaseEvent):
    type: Literal["tool_result"] = "tool_result"
    call_id: str
    name: str
    content: str
    is_error: bool = False
    duration_ms: float = 0.0
    client: bool = False  # the caller's result for a call left to it: the run started with it


class Retrieval(BaseEvent):
    type: Literal["retrieval"] = "retrieval"
    query: str
    knowledge_base: str = ""
    hits: list[dict[str, Any]] = []
    duration_ms: float = 0.0


class Handoff(BaseEvent):
    type: Literal["handoff"] = "handoff"
    from_agent: str
    to_agent: str
    reason: str = ""


class ApprovalRequested(BaseEvent):
    """A tool listed in ``approvals:`` was called: the run pauses until a human approves or rejects it."""

    type: Literal["approval_requested"] = "approval_requested"
    call_id: str
    name: str
    arguments: dict[str, Any]
    # The paused reply's calls of the caller's own tools (the OpenAI endpoint's client-side functions): its
    # continuation leaves them to the caller too, as the run would have without the pause.
    client_calls: list[str] = []


class ApprovalApproved(BaseEvent):
    """A paused call was approved (``arguments`` as run, edited or not); its run continues."""

    type: Literal["approval_approved"] = "approval_approved"
    call_id: str
    name: str
    arguments: dict[str, Any]
    edited: bool = False
    paused_run_id: str = ""


class ApprovalRejected(BaseEvent):
    """A paused call was rejected: the model is told why, and the run continues without it."""

    type: Literal["approval_rejected"] = "approval_rejected"
    call_id: str
    name: str
    reason: str = ""
    paused_run_id: str = ""


class StepStarted(BaseEvent):
    """A workflow step began (``kind`` agent, tool or condition; ``name`` the agent or tool)."""

    type: Literal["step_started"] = "step_started"
    step_id: str
    kind: Literal["agent", "tool", "condition"]
    name: str = ""
    input: Any = None


class StepFinished(BaseEvent):
    """A workflow step ended: ``ok`` with its output, ``skipped`` (its ``when`` was false) or ``failed``."""

    type: Literal["step_finished"] = "step_finished"
    step_id: str
    status: Literal["ok", "skipped", "failed"]
    output: Any = None
    error: str | None = None
    duration_ms: float = 0.0


class Checkpoint(BaseEvent):
    """The run's state was saved (a workflow step or a team tool round ended): a resume starts here."""

    type: Literal["checkpoint"] = "checkpoint"
    label: str


class Resumed(BaseEvent):
    """This run continues an interrupted one (``halguru runs resume``) from its last checkpoint."""

    type: Literal["resumed"] = "resumed"
    from_run_id: str
    checkpoint: str = ""
    reused: list[str] = []  # workflow steps or tool calls whose results were kept, not run again


class Error(BaseEvent):
    """Something went wrong. ``fatal`` errors end the run; others are reported to the model."""

    type: Literal["error"] = "error"
    # "context": the prompt does not fit the model's context (the input is too long: ContextOverflow)
    kind: Literal["model", "context", "tool", "format", "limit", "timeout", "cancelled", "internal", "step", "mcp"]
    message: str
    fatal: bool = False
    detail: str | None = None  # where it happened: a tool's traceback from its own code on


class RunFinished(BaseEvent):
    type: Literal["run_finished"] = "run_finished"
    # limited: a team guard stopped it; paused: a call waits for approval (`halguru runs pending`);
    # interrupted: the server shut down before the run could finish (resumable like a killed run)
    status: Literal["ok", "failed", "cancelled", "limited", "paused", "interrupted"]
    output: str
    error: str | None = None
    duration_ms: float = 0.0
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


Event = Annotated[
    RunStarted | ModelCall | Token | ModelResult | ToolCall | ToolResult | Retrieval | Handoff | ApprovalRequested
    | ApprovalApproved | ApprovalRejected | StepStarted | StepFinished | Checkpoint | Resumed | Error | RunFinished,
    Field(discriminator="type"),
]

_EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


# How a stored model_call holds the conversation's history: one ``{"history": n}`` in its messages stands for the
# conversation's first n messages (those before the run: a conversation's messages are only ever appended). Each
# call sends the whole history, so storing it whole made a conversation's trace grow with the square of its length.
HISTORY = "history"


def compact_history(messages: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """``messages`` with the run's ``history`` (as dumped) replaced by its marker; None where they do not hold
    it whole and in order (a sub-run's own messages, a history the driver changed)."""
    count = len(history)
    if not count:
        return None
    first = history[0]
    for start in range(len(messages) - count + 1):
        if messages[start] == first and messages[start:start + count] == history:
            return [*messages[:start], {HISTORY: count}, *messages[start + count:]]
    return None


def history_wanted(event: dict[str, Any]) -> int:
    """How many of the conversation's first messages a stored event's marker stands for (0: none)."""
    if event.get("type") != "model_call":
        return 0
    return max((m[HISTORY] for m in event.get("messages", ()) if HISTORY in m), default=0)


def expand_history(event: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """A stored event with its history marker replaced by the conversation's messages (as dumped)."""
    if event.get("type") != "model_call":
        return event
    messages = [piece for m in event["messages"] for piece in (history[:m[HISTORY]] if HISTORY in m else (m,))]
    return {**event, "messages": messages}


def stub_history(event: dict[str, Any]) -> dict[str, Any]:
    """A stored event with its history marker replaced by as many empty messages: what counts them needs (a trace
    tree's "n messages"), without reading the conversation (``get_events(history=False)``)."""
    return expand_history(event, [{}] * history_wanted(event)) if history_wanted(event) else event


def parse_event(data: dict[str, Any] | str) -> Event:
    """Rebuild an event from its dict or JSON form (as stored or printed by ``--json``)."""
    if isinstance(data, str):
        return _EVENT_ADAPTER.validate_json(data)
    return _EVENT_ADAPTER.validate_python(data)
