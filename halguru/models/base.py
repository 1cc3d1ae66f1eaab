"""What every model provider speaks: messages in, a stream of chunks out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer


class ToolCallRequest(BaseModel):
    id: str
    name: str
    arguments: dict[str, Any] = {}


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCallRequest] = []
    tool_call_id: str | None = None
    name: str | None = None  # tool name, on role="tool"


def answer_dangling_calls(messages: list[Message], content: str,
                          answered: Collection[str] = ()) -> list[Message]:
    """``messages`` with a tool result (``content``) right after the results of each assistant tool call that has
    none (a run cut among its calls): OpenAI-compatible endpoints refuse a call not followed by its result.
    ``answered``: ids of calls whose results come after ``messages`` (a client's, for the calls it ran).
    ``messages`` itself when nothing is missing."""
    out: list[Message] = []
    pending: list[ToolCallRequest] = []
    for message in messages:
        if message.role == "tool":
            pending = [c for c in pending if c.id != message.tool_call_id]
        else:
            out += [Message(role="tool", content=content, tool_call_id=c.id, name=c.name) for c in pending]
            pending = [c for c in message.tool_calls if c.id not in answered] if message.role == "assistant" else []
        out.append(message)
    out += [Message(role="tool", content=content, tool_call_id=c.id, name=c.name) for c in pending]
    return messages if len(out) == len(messages) else out


class ToolSpec(BaseModel):
    """A tool as a model sees it: name, description and JSON schema of the arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


# Settings a run asks for only now and then (the OpenAI endpoint's, agent.yaml's top_k/min_p); left out of a dump
# while unset, so the traces and conversation-test recordings made before they existed still match.
OPTIONAL_SAMPLING = ("stop", "frequency_penalty", "presence_penalty", "top_k", "min_p")


# OpenAI's seed is an int64; llama.cpp's a uint32, which its provider maps the seed to (llama_sampling). Beyond
# these, ctypes kept the low 32 bits: 2**70 sampled as seed 0, 2**32 + 3 as seed 3, top_k 2**32 + 1 as top_k 1.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
TOP_K_MAX = 2**31 - 1  # llama.cpp's int32


class SamplingSettings(BaseModel):
    temperature: float = Field(default=0.2, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=512, gt=0)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    repeat_penalty: float = Field(default=1.1, ge=1, le=2)
    # The answer ends before the first of these (never included); every model honours it (the agent loop cuts
    # the stream), llama.cpp and OpenAI-compatible endpoints stop generating there themselves.
    stop: list[str] | None = None
    # OpenAI's penalties (-2 to 2): a token's logit is lowered by frequency_penalty per time it was generated
    # recently and by presence_penalty once it was. Only providers that list them in ``sampling`` apply them.
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    # llama.cpp's truncations before temperature: the top_k most likely tokens (0: all), then those at least
    # min_p times as likely as the likeliest (0: all). Unset: the provider's own (llama.cpp: 40 and 0.05).
    top_k: int | None = Field(default=None, ge=0, le=TOP_K_MAX)
    min_p: float | None = Field(default=None, ge=0, le=1)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k not in OPTIONAL_SAMPLING or v is not None}


@dataclass
class ModelRequest:
    messages: list[Message]
    tools: list[ToolSpec] = field(default_factory=list)
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    tool_choice: Literal["auto", "required", "none"] = "auto"
    parallel_tool_calls: bool = True  # False: at most one tool call per reply (the OpenAI endpoint's caller asked)
    # Lets a provider keep per-conversation state (llama.cpp KV cache).
    conversation_id: str | None = None
    # The answer must be one JSON value matching this schema (typed workflow outputs). Providers that can
    # constrain decoding do (llama.cpp: a grammar; OpenAI-compatible: response_format); the runtime validates.
    response_schema: dict[str, Any] | None = None


@dataclass
class TextChunk:
    text: str


@dataclass
class ToolCallChunk:
    call: ToolCallRequest


@dataclass
class FormatErrorChunk:
    """The model tried to call a tool but its output did not parse."""

    raw: str
    reason: str


# How deep a tool call's arguments may nest (objects and lists in one another), whoever wrote them (a model, or a
# client sending its own tool loop's calls back): deeper than any tool's schema, and well within what a stored
# message is read back with (pydantic writes ~250 levels in all: the conversation's messages and the run's events
# were a 500, and the run could not be replayed)
MAX_ARGUMENTS_DEPTH = 100


def json_depth(value: Any) -> int:
    """How deep objects and lists nest in a parsed JSON value (1: ``{}``), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


@dataclass
class UsageChunk:
    """A call's token counts. A provider may send one early (the prompt's count, ``finish_reason`` "cancelled")
    before its final one: the last one seen counts, so a stream cut mid-answer still knows its prompt."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str = "stop"
    # The oldest messages left out of the prompt because the conversation did not fit the context.
    dropped_messages: int = 0


Chunk = TextChunk | ToolCallChunk | FormatErrorChunk | UsageChunk


class ModelEntry(BaseModel):
    """A named model: which provider serves it and with what options."""

    name: str
    provider: str
    source: str = Field(description="where it comes from, for `halguru models list`")
    options: dict[str, Any] = {}


class Model(Protocol):
    """A ready-to-use model. ``stream`` must never block the event loop."""

    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]: ...


class ModelProvider(Protocol):
    """A plugin-registered kind of model (``llama-cpp``, ``openai``, ``scripted``...)."""

    name: ClassVar[str]
    description: ClassVar[str]
    # Optional ``shared: ClassVar[bool]`` (default True): False makes get_model() build a new instance
    # on every call, for providers whose models hold per-user state (the scripted model's position).
    # Optional ``sampling: ClassVar[frozenset[str]]``: the settings beyond temperature, top_p, max_tokens, seed and
    # stop that its models apply (``frequency_penalty``, ``presence_penalty``, ``top_k``, ``min_p``,
    # ``repeat_penalty``); the OpenAI endpoint refuses the others rather than ignore them.
    # Optional ``check_schema(schema)`` classmethod: ValueError (the reason) for a response schema its models
    # cannot follow (llama.cpp: one it cannot turn into a grammar); the OpenAI endpoint answers that with a 400.
    # Optional ``check_schema_size(schema)`` classmethod: the same for a schema too large, cheap: run first, before
    # the schema is validated (which alone takes ~0.6 s for 3,000 properties with a pattern).

    @classmethod
    def default_models(cls) -> list[ModelEntry]:
        """Models this provider offers without any configuration."""
        ...

    @classmethod
    def from_reference(cls, argument: str) -> ModelEntry:
        """Build an entry from ``provider:argument`` (a path, a model id...)."""
        ...

    @classmethod
    def create(cls, entry: ModelEntry) -> Model: ...


class PerAgentModel:
    """A model override that wraps each agent's own model (``halguru test`` records and replays teams and
    workflows through it): ``choose(reference)`` gives the Model to use for an agent whose agent.yaml names
    ``reference``."""

    def __init__(self, choose: Callable[[str], Model]):
        self.choose = choose
        self.name = "per-agent"

    def for_agent(self, reference: str) -> Model:
        return self.choose(reference)
