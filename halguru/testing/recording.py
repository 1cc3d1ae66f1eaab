"""Record every model response and tool result of a test, and replay them with no model.

A recording lives next to its test file (``tests/test_x.yaml`` -> ``tests/test_x.recording.json``).
Replay checks that each model request still matches the recorded one (messages, tools and their
schemas, sampling); a changed prompt or tool fails with a diff of what changed.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from halguru.atomic import exclusive_lock, write_atomically
from halguru.errors import HalguruError, ToolError
from halguru.models.base import (
    Chunk,
    FormatErrorChunk,
    Model,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    UsageChunk,
)
from halguru.tools.decorator import Tool

FORMAT = 1


class ReplayMismatch(HalguruError):
    """The agent asked something the recording does not hold; ``diff`` says what changed."""

    def __init__(self, message: str, diff: str = ""):
        super().__init__(message)
        self.diff = diff


def recording_path(test_file: Path) -> Path:
    return test_file.with_name(f"{test_file.stem}.recording.json")


def fingerprint(request: ModelRequest) -> dict[str, Any]:
    """What must match for a recorded answer to stand: ids and the conversation id do not count."""
    messages = []
    for m in request.messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            item["tool_calls"] = [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]
        if m.name:
            item["name"] = m.name
        messages.append(item)
    out = {
        "messages": messages,
        "tools": [t.model_dump() for t in request.tools],
        "tool_choice": request.tool_choice,
        "settings": request.settings.model_dump(),
    }
    if request.response_schema is not None:
        out["response_schema"] = request.response_schema
    return out


def _chunk_to_json(chunk: Chunk) -> dict[str, Any]:
    if isinstance(chunk, TextChunk):
        return {"text": chunk.text}
    if isinstance(chunk, ToolCallChunk):
        return {"tool_call": chunk.call.model_dump()}
    if isinstance(chunk, FormatErrorChunk):
        return {"format_error": {"raw": chunk.raw, "reason": chunk.reason}}
    return {"usage": dataclasses.asdict(chunk)}


def _chunk_from_json(data: dict[str, Any]) -> Chunk:
    if "text" in data:
        return TextChunk(data["text"])
    if "tool_call" in data:
        return ToolCallChunk(ToolCallRequest(**data["tool_call"]))
    if "format_error" in data:
        return FormatErrorChunk(**data["format_error"])
    return UsageChunk(**data["usage"])


def _diff(recorded: dict[str, Any], actual: dict[str, Any]) -> str:
    a = json.dumps(recorded, indent=2, ensure_ascii=False, sort_keys=True).splitlines()
    b = json.dumps(actual, indent=2, ensure_ascii=False, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "recorded request", "this request", lineterm="", n=2))


class Cassette:
    """The recorded model calls, tool results and knowledge searches of one test."""

    def __init__(self, data: dict[str, Any] | None = None):
        data = data or {}
        self.model_calls: list[dict[str, Any]] = data.get("model_calls", [])
        self.tool_results: list[dict[str, Any]] = data.get("tool_results", [])
        # None: recorded before knowledge searches were (those replays search the knowledge live)
        self.retrievals: list[dict[str, Any]] | None = data.get("retrievals", None if data else [])
        self.judge_scores: list[dict[str, Any]] = data.get("judge_scores", [])

    def to_json(self) -> dict[str, Any]:
        return {"model_calls": self.model_calls, "tool_results": self.tool_results,
                "retrievals": self.retrievals, "judge_scores": self.judge_scores}


# A search's score differs in its 6th digit from run to run (float sums in another order) and its time always does;
# neither reaches the model. Kept as they came, each `--record` of an unchanged test rewrote its recording, and
# the committed file changed in every pull request. A recording keeps the score to this many digits and no time.
SCORE_DIGITS = 3


class RecordingRetriever:
    """An agent's knowledge that keeps each search's hits (auto retrieval and ``search_knowledge``), without the
    noise of their times and scores' last digits (see SCORE_DIGITS)."""

    def __init__(self, inner: Any, cassette: Cassette):
        self.inner, self.cassette, self.top_k = inner, cassette, inner.top_k
        self.searches: list[dict[str, Any]] = cassette.retrievals if cassette.retrievals is not None else []
        cassette.retrievals = self.searches

    def retrieve(self, query: str, k: int | None = None) -> list[Any]:
        found = self.inner.retrieve(query, k)
        self.searches.append({"query": query, "results": [
            {"knowledge_base": r.knowledge_base, "duration_ms": 0.0,
             "hits": [{**dataclasses.asdict(h), "score": round(h.score, SCORE_DIGITS)} for h in r.hits]}
            for r in found]})
        return found


class ReplayRetriever:
    """Gives back the recorded searches in order: no knowledge base is opened, so replays run offline and
    do not change when documents do (``cursor`` is shared by the agents of one test)."""

    def __init__(self, searches: list[dict[str, Any]], cursor: list[int], top_k: int):
        self.searches, self.cursor, self.top_k = searches, cursor, top_k

    def retrieve(self, query: str, k: int | None = None) -> list[Any]:
        from halguru.rag.agent import BaseHits
        from halguru.rag.errors import KnowledgeError
        from halguru.rag.query import Hit

        index = self.cursor[0]
        self.cursor[0] += 1
        if index >= len(self.searches):
            raise KnowledgeError(f"replay: knowledge search {index + 1} is not in the recording; re-record")
        recorded = self.searches[index]
        if recorded["query"] != query:
            raise KnowledgeError(f"replay: recorded knowledge search was {recorded['query']!r}, not {query!r}; "
                                 "re-record")
        return [BaseHits(r["knowledge_base"], [Hit(**h) for h in r["hits"]], r["duration_ms"])
                for r in recorded["results"]]


class RecordingModel:
    """Passes requests to a real model and keeps what it answered."""

    def __init__(self, inner: Model, cassette: Cassette):
        self.inner = inner
        self.name = inner.name
        self.cassette = cassette

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        chunks: list[dict[str, Any]] = []
        self.cassette.model_calls.append({"request": fingerprint(request), "chunks": chunks})
        async for chunk in self.inner.stream(request):
            chunks.append(_chunk_to_json(chunk))
            yield chunk


class ReplayModel:
    """Answers from a cassette; no model is loaded or called."""

    def __init__(self, cassette: Cassette, name: str):
        self.name = name
        self.cassette = cassette
        self.position = 0
        self.mismatch: ReplayMismatch | None = None

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        index = self.position
        self.position += 1
        if index >= len(self.cassette.model_calls):
            self.mismatch = ReplayMismatch(
                f"model call {index + 1} is not in the recording (it holds {len(self.cassette.model_calls)}); "
                "re-record with --record")
            raise self.mismatch
        recorded = self.cassette.model_calls[index]
        actual = fingerprint(request)
        if actual != recorded["request"]:
            self.mismatch = ReplayMismatch(
                f"model call {index + 1} differs from the recording (changed prompt, tools or settings); "
                "re-record with --record", _diff(recorded["request"], actual))
            raise self.mismatch
        for item in recorded["chunks"]:
            yield _chunk_from_json(item)


def _tool_error_text(tool: Tool, exc: BaseException) -> str:
    return str(exc) if isinstance(exc, ToolError) else f"{tool.name} raised {type(exc).__name__}: {exc}"


def recording_tool(tool: Tool, cassette: Cassette) -> Tool:
    """The same tool, keeping each result (or error) it gives."""
    from halguru.tools.registry import result_text

    def keep(arguments: dict[str, Any], result: Any = None, error: str | None = None) -> None:
        cassette.tool_results.append({"name": tool.name, "arguments": arguments,
                                      "content": None if error else result_text(result), "error": error})

    def arguments_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return args[0].model_dump() if tool.takes_model else dict(kwargs)

    async def async_function(*args: Any, **kwargs: Any) -> Any:
        try:
            result = await tool.function(*args, **kwargs)
        except Exception as exc:
            keep(arguments_of(args, kwargs), error=_tool_error_text(tool, exc))
            raise
        keep(arguments_of(args, kwargs), result)
        return result

    def function(*args: Any, **kwargs: Any) -> Any:
        try:
            result = tool.function(*args, **kwargs)
        except Exception as exc:
            keep(arguments_of(args, kwargs), error=_tool_error_text(tool, exc))
            raise
        keep(arguments_of(args, kwargs), result)
        return result

    return dataclasses.replace(tool, function=async_function if tool.is_async else function)


def replay_tool(tool: Tool, cassette: Cassette, cursor: list[int]) -> Tool:
    """A tool that gives back the recorded results in order (``cursor`` is shared by all tools)."""

    async def function(*args: Any, **kwargs: Any) -> str:
        arguments = args[0].model_dump() if tool.takes_model else dict(kwargs)
        index = cursor[0]
        cursor[0] += 1
        if index >= len(cassette.tool_results):
            raise ToolError(f"replay: call {index + 1} to {tool.name} is not in the recording; re-record")
        recorded = cassette.tool_results[index]
        if recorded["name"] != tool.name or recorded["arguments"] != json.loads(json.dumps(arguments)):
            raise ToolError(f"replay: recorded call was {recorded['name']}({recorded['arguments']}), "
                            f"not {tool.name}({arguments}); re-record")
        if recorded["error"]:
            raise ToolError(recorded["error"])
        return recorded["content"]

    return dataclasses.replace(tool, function=function, inline=False)


def load_recording(path: Path) -> dict[str, Cassette]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HalguruError(f"{path}: unreadable recording ({exc}); re-record with --record") from None
    from pydantic import TypeAdapter, ValidationError

    try:  # each test's lists of records (a hand-edited or foreign file: one line, not a traceback at replay)
        tests = TypeAdapter(dict[str, dict[str, list[dict[str, Any]] | None]]).validate_python(
            data.get("tests", {}) if isinstance(data, dict) else None)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise HalguruError(f"{path}: not a halguru recording (tests{'.' + where if where else ''}: "
                           f"{exc.errors()[0]['msg']}); re-record with --record") from None
    return {name: Cassette(c) for name, c in tests.items()}


def save_recording(path: Path, recorded: dict[str, Cassette], agent: str, model: str) -> None:
    """Put ``recorded`` (by test name) into the recording at ``path``, keeping its other tests'. The file is read
    afresh and written atomically under a lock: two `--record` runs of one file at once (``-k`` in two terminals,
    pytest-xdist workers) keep both's tests, and an interrupted one never leaves half a file. The lock is in
    HALGURU_HOME, not beside the recording, where it would be committed with the project."""
    import hashlib

    from halguru.config import home_dir

    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with exclusive_lock(home_dir() / ".locks" / f"recording-{key}.lock"):
        cassettes = {**load_recording(path), **recorded}
        data = {"format": FORMAT, "agent": agent, "model": model,
                "tests": {name: c.to_json() for name, c in sorted(cassettes.items())}}
        write_atomically(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")  # mode as the file replaced
