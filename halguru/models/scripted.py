"""The scripted model: deterministic replies and tool calls, for tests and demos.

A script is a list of replies, used in order (one per model call):

```yaml
- "Hello!"                                   # a plain answer
- tool_calls: [{name: calculator, arguments: {expression: "17*23"}}]
- {text: "17*23 = 391", token_delay: 0.01}   # streamed slowly
- {raw_tool_call: '{"name": broken'}          # output that breaks the tool-call format
- {error: "connection refused"}               # the model fails
```

When the script runs out (or there is none) the model echoes the last user
message, so ``model: scripted`` works without a script.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from halguru.errors import ModelError
from halguru.models.base import (
    Chunk,
    FormatErrorChunk,
    ModelEntry,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    UsageChunk,
)

_PIECES = re.compile(r"\s*\S+|\s+")


def word_pieces(text: str) -> list[str]:
    """A text cut into word-sized pieces, streamed like a model's tokens (scripted and replayed models)."""
    return _PIECES.findall(text)


class ScriptedCall(BaseModel):
    """One tool call of a scripted reply."""

    model_config = ConfigDict(extra="forbid")
    name: str
    arguments: dict[str, Any] = {}
    id: str | None = None


class ScriptedReply(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silently empty reply
    text: str = ""
    tool_calls: list[ScriptedCall] = []
    raw_tool_call: str | None = None
    error: str | None = None
    token_delay: float = 0.0


def _coerce(reply: str | dict[str, Any] | ScriptedReply) -> ScriptedReply:
    if isinstance(reply, ScriptedReply):
        return reply
    if isinstance(reply, str):
        return ScriptedReply(text=reply)
    return ScriptedReply.model_validate(reply)


class ScriptedModel:
    """Replays a script; thread-safe enough for one run at a time, like a real model."""

    def __init__(self, replies: Sequence[str | dict[str, Any] | ScriptedReply] = (), name: str = "scripted"):
        self.name = name
        self.replies = [_coerce(r) for r in replies]
        self.position = 0
        self.requests: list[ModelRequest] = []

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        if self.position < len(self.replies):
            reply = self.replies[self.position]
            self.position += 1
        else:
            last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
            reply = ScriptedReply(text=f"You said: {last_user}")
        if reply.error:
            raise ModelError(reply.error)
        prompt_tokens = sum(len(m.content.split()) + 4 for m in request.messages)
        yield UsageChunk(prompt_tokens=prompt_tokens, finish_reason="cancelled")  # as llama.cpp's: the prompt's
        completion = 0
        for piece in word_pieces(reply.text):
            if reply.token_delay:
                await asyncio.sleep(reply.token_delay)
            completion += 1
            yield TextChunk(piece)
        if reply.raw_tool_call is not None:
            completion += len(reply.raw_tool_call.split())
            yield FormatErrorChunk(reply.raw_tool_call, "scripted malformed tool call")
        for call in reply.tool_calls:
            completion += 1
            yield ToolCallChunk(
                ToolCallRequest(id=call.id or f"call_{uuid.uuid4().hex[:8]}", name=call.name,
                                arguments=call.arguments)
            )
        finish = "tool_calls" if reply.tool_calls else "stop"
        yield UsageChunk(prompt_tokens=prompt_tokens, completion_tokens=completion, finish_reason=finish)


class _ScriptError(ModelError):
    def __init__(self, message: str):
        super().__init__(f"scripted model: {message}")


def load_script(path: Path) -> list[ScriptedReply]:
    """The replies of a script file; any problem is one line naming the file (and the line and field)."""
    import yaml

    from halguru.yamlfile import first_problem, parse_yaml, yaml_line_for

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"scripted model: cannot read script {path}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    data = parse_yaml(text, path, _ScriptError)
    if not isinstance(data, list):
        raise ModelError(f"scripted model: {path} must be a YAML list of replies")
    replies = []
    for index, item in enumerate(data):
        if isinstance(item, str):
            replies.append(ScriptedReply(text=item))
            continue
        if not isinstance(item, dict):
            line = yaml_line_for(text, (index,)) or 1
            raise ModelError(f"scripted model: {path}:{line}: reply {index + 1}: a reply is a text or a mapping "
                             "(text, tool_calls, raw_tool_call, error, token_delay)")
        try:
            replies.append(ScriptedReply.model_validate(item))
        except ValidationError as exc:
            loc, _, problem = first_problem(yaml.safe_dump(item), exc)
            line = yaml_line_for(text, (index, *loc)) or 1
            raise ModelError(f"scripted model: {path}:{line}: reply {index + 1}: {problem}") from None
    return replies


class ScriptedProvider:
    name: ClassVar[str] = "scripted"
    description: ClassVar[str] = "deterministic replies from a script (tests, demos)"
    shared: ClassVar[bool] = False  # each user of a script (a test, a chat session) starts at its top
    path_argument: ClassVar[bool] = True  # scripted:PATH in agent.yaml is relative to its folder

    @classmethod
    def check(cls, entry: ModelEntry) -> None:
        """What ``halguru validate`` asks: the script is there and reads as replies."""
        cls.create(entry)

    @classmethod
    def default_models(cls) -> list[ModelEntry]:
        return [ModelEntry(name="scripted", provider=cls.name, source="built-in (echoes the user)")]

    @classmethod
    def from_reference(cls, argument: str) -> ModelEntry:
        return ModelEntry(name=f"scripted:{argument}", provider=cls.name, source=argument,
                          options={"script": argument})

    @classmethod
    def create(cls, entry: ModelEntry) -> ScriptedModel:
        script = entry.options.get("script")
        replies = load_script(Path(script).expanduser()) if script else []
        return ScriptedModel(replies, name=entry.name)
