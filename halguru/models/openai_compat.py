"""Any OpenAI-compatible chat endpoint (llama-server, Ollama, vLLM, hosted APIs), streaming over httpx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable
from typing import Any, ClassVar, TypeVar

import httpx

from halguru.durations import retry_after_seconds
from halguru.errors import ModelError, exception_line
from halguru.models.base import (
    MAX_ARGUMENTS_DEPTH,
    Chunk,
    FormatErrorChunk,
    Message,
    ModelEntry,
    ModelRequest,
    TextChunk,
    ToolCallChunk,
    ToolCallRequest,
    UsageChunk,
    json_depth,
)
from halguru.models.secrets import resolve_api_key

T = TypeVar("T")


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            item["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in m.tool_calls
            ]
        if m.role == "tool":
            item["tool_call_id"] = m.tool_call_id
        out.append(item)
    return out


TOO_DEEP = f"tool arguments nest more than {MAX_ARGUMENTS_DEPTH} deep"


def parse_tool_call(raw_id: str, name: str, arguments: str) -> ToolCallChunk | FormatErrorChunk:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return FormatErrorChunk(f"{name}({arguments})", f"tool arguments are not JSON: {exc.msg}")
    except RecursionError:  # thousands of brackets deep: Python's parser gives up
        return FormatErrorChunk(f"{name}({arguments[:200]})", TOO_DEEP)
    if not isinstance(args, dict):
        return FormatErrorChunk(f"{name}({arguments})", "tool arguments are not a JSON object")
    if json_depth(args) > MAX_ARGUMENTS_DEPTH:  # stored, the conversation could not be read back
        return FormatErrorChunk(f"{name}({arguments[:200]})", TOO_DEEP)
    return ToolCallChunk(ToolCallRequest(id=raw_id or f"call_{name}", name=name, arguments=args))


def recover_text_tool_call(text: str, tool_names: set[str]) -> Chunk | None:
    """A model that ignores the tools API may write the call as text; recover it or count it."""
    stripped = text.strip().removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
    if not stripped.startswith("{"):
        return None
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        return FormatErrorChunk(text, "answer looks like a tool call but is not valid JSON")
    if isinstance(data, dict) and data.get("name") in tool_names:
        return parse_tool_call("call_text", data["name"], json.dumps(data.get("arguments", {})))
    return None


def _error_message(error: Any) -> str:
    """The ``message`` of an OpenAI-style ``error`` object (or the value itself), on one line."""
    message = error.get("message", error) if isinstance(error, dict) else error
    return " ".join(str(message).split())[:300]


DEFAULT_DEADLINE_S = 600.0  # a whole model call; httpx's timeout bounds each read only
OPENAI_MAX_STOPS = 4  # api.openai.com answers a 400 for more stop strings


class OpenAIModel:
    def __init__(self, name: str, base_url: str, model_id: str, api_key: str | None, timeout: float = 120,
                 max_retries: int = 3, max_wait: float = 30, deadline: float = DEFAULT_DEADLINE_S):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries, self.max_wait = max_retries, max_wait
        # ``timeout`` is per read: a server sending a byte every 100 s held a call as long as the run's timeout
        self.deadline = deadline

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": to_openai_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": request.settings.temperature,
            "top_p": request.settings.top_p,
            "max_tokens": request.settings.max_tokens,
        }
        # Sent only when set. top_k and min_p are not OpenAI's own, but vLLM, llama.cpp's server, SGLang and LM
        # Studio read them under these names; OpenAI itself answers a 400 for them, which the run reports.
        for name in ("seed", "stop", "frequency_penalty", "presence_penalty", "top_k", "min_p"):
            value = getattr(request.settings, name)
            if value is not None:
                body[name] = value
        if body.get("stop"):  # OpenAI refuses a fifth; the agent's loop cuts the answer at the others
            body["stop"] = body["stop"][:OPENAI_MAX_STOPS]
        if request.tools and request.tool_choice != "none":
            body["tools"] = [
                {"type": "function", "function": t.model_dump()} for t in request.tools
            ]
            body["tool_choice"] = request.tool_choice
            if not request.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        if request.response_schema is not None and "tools" not in body:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": request.response_schema}}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        text_parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = UsageChunk()
        deadline = asyncio.get_running_loop().time() + self.deadline
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client, self._response(
                client, body, headers, deadline
            ) as response:
                async for data in self._payloads(response, deadline):
                    if isinstance(data.get("usage"), dict):
                        usage.prompt_tokens = data["usage"].get("prompt_tokens", 0) or 0
                        usage.completion_tokens = data["usage"].get("completion_tokens", 0) or 0
                        details = data["usage"].get("prompt_tokens_details") or {}
                        usage.cached_tokens = details.get("cached_tokens", 0) or 0
                    for choice in data.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            text_parts.append(delta["content"])
                            yield TextChunk(delta["content"])
                        for tc in delta.get("tool_calls") or []:
                            slot = calls.setdefault(tc.get("index", 0), {"id": "", "name": "", "args": ""})
                            slot["id"] = tc.get("id") or slot["id"]
                            fn = tc.get("function") or {}
                            slot["name"] += fn.get("name") or ""
                            slot["args"] += fn.get("arguments") or ""
                        if choice.get("finish_reason"):
                            usage.finish_reason = choice["finish_reason"]
        except httpx.ConnectError:
            # an openai:MODEL reference takes its URL from OPENAI_BASE_URL, which `models list` does not show
            where = ("OPENAI_BASE_URL sets it for openai:MODEL" if self.name.startswith("openai:")
                     else "check the base URL with `halguru models list`")
            raise ModelError(f"cannot reach {self.base_url} (model {self.name}): is the server running? {where}") \
                from None
        except httpx.TimeoutException:
            raise ModelError(f"{self.base_url} did not answer within {self.timeout:.0f}s (model {self.name})") from None
        except TimeoutError:
            raise ModelError(f"{self.base_url} did not finish its answer within {self.deadline:g}s (model "
                             f"{self.name}'s deadline option)") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:  # the connection broke mid-answer
            raise ModelError(f"{self.base_url} broke off the answer (model {self.name}): "
                             f"{exception_line(exc)}") from None
        for slot in calls.values():
            yield parse_tool_call(slot["id"], slot["name"], slot["args"])
        if not calls and request.tools:
            recovered = recover_text_tool_call("".join(text_parts), {t.name for t in request.tools})
            if recovered is not None:
                yield recovered
        yield usage

    @contextlib.asynccontextmanager
    async def _response(self, client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str],
                        deadline: float) -> AsyncIterator[httpx.Response]:
        """The endpoint's streaming response. A 429 or 503 (rate limit, a full queue) is tried again
        ``max_retries`` times, after its Retry-After (at most ``max_wait`` s) or a backoff: an eval or a busy
        channel would otherwise fail a run for a limit that lifts in seconds. TimeoutError past ``deadline``."""
        attempt = 0
        while True:
            async with contextlib.AsyncExitStack() as stack:
                request = client.stream("POST", f"{self.base_url}/chat/completions", json=body, headers=headers)
                response = await _before(deadline, stack.enter_async_context(request))
                if response.status_code < 400:
                    yield response
                    return
                await _before(deadline, response.aread())
                wait = self._retry_wait(attempt, response)
                if wait is None:
                    raise ModelError(self._http_error(response, attempt))
            await _before(deadline, asyncio.sleep(wait))
            attempt += 1

    def _retry_wait(self, attempt: int, response: httpx.Response) -> float | None:
        """Seconds to wait before trying again, or None: give up (or nothing to retry)."""
        if response.status_code not in (429, 503) or attempt >= self.max_retries:
            return None
        told = retry_after_seconds(response.headers.get("retry-after"))
        return min(told if told is not None else 2 ** attempt * (0.5 + random.random()), self.max_wait)

    async def _payloads(self, response: httpx.Response, deadline: float) -> AsyncIterator[dict[str, Any]]:
        """Each JSON object of the event stream, up to ``[DONE]``. A body that is no event stream is read as a
        whole answer (a server that does not stream) or refused; an event that is no JSON object or reports
        an error, and a stream that ends before the answer did, are ModelErrors: each used to pass as an empty
        or cut answer that the run called a success. TimeoutError past ``deadline`` (a loop clock time)."""
        other: list[str] = []
        events = finished = 0
        lines = response.aiter_lines()
        while (line := await _before(deadline, anext(lines, None))) is not None:
            if not line.startswith("data:"):
                if not events and line.strip() and not line.startswith((":", "event:", "id:", "retry:")):
                    other.append(line)
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            events += 1
            data = self._event(payload)
            finished += any(c.get("finish_reason") for c in data["choices"])
            yield data
        if not events:
            yield self._whole_answer("\n".join(other), response)
        elif not finished:
            raise ModelError(f"{self.base_url} ended the stream before the answer did (no finish_reason, no "
                             f"[DONE]; model {self.name}): the connection was cut, or the server failed")

    def _event(self, payload: str) -> dict[str, Any]:
        """One event's JSON object, its ``choices`` a list of objects; an ``error`` event (sent mid-stream by
        vLLM, llama-server, OpenAI) raises."""
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{self.base_url} sent a stream that is not JSON: {exc.msg}") from None
        if isinstance(data, dict) and data.get("error"):
            raise ModelError(f"{self.base_url} reported an error mid-answer (model {self.name}): "
                             f"{_error_message(data['error'])}")
        choices = (data.get("choices") or []) if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            raise ModelError(f"{self.base_url} sent a stream event that is not a chat completion chunk "
                             f"(model {self.name}): {payload[:100]}")
        return {**data, "choices": choices}

    def _whole_answer(self, text: str, response: httpx.Response) -> dict[str, Any]:
        """A non-streamed chat completion as one stream event (``message`` as the ``delta``)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and data.get("error"):
            raise ModelError(f"{self.base_url} reported an error (model {self.name}): {_error_message(data['error'])}")
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
            kind = response.headers.get("content-type", "no content type")
            start = " ".join(text.split())[:80]
            raise ModelError(f"{self.base_url} answered HTTP {response.status_code} ({kind}) without a chat "
                             f"completion (model {self.name}): {start!r}; check the base URL (it usually ends "
                             "in /v1)")
        whole = []
        for choice in choices:
            message = dict(choice.get("message") or {})
            message["tool_calls"] = [{"index": i, **c} for i, c in enumerate(message.get("tool_calls") or [])
                                     if isinstance(c, dict)]
            whole.append({"delta": message, "finish_reason": choice.get("finish_reason") or "stop"})
        assert isinstance(data, dict)
        return {"choices": whole, "usage": data.get("usage")}

    def _http_error(self, response: httpx.Response, retries: int = 0) -> str:
        if response.status_code in (401, 403):
            return (
                f"{self.base_url} refused the API key (HTTP {response.status_code}) for model {self.name}: "
                "check the key (`halguru models set-key` or the variable named by --api-key-env)"
            )
        detail = response.text.strip().replace("\n", " ")[:200]
        tried = f" (tried {retries + 1} times)" if retries else ""
        return f"{self.base_url} answered HTTP {response.status_code}{tried} for model {self.name}: {detail}"


async def _before(deadline: float, step: Awaitable[T]) -> T:
    """``step``'s result, or TimeoutError once the loop's clock passes ``deadline``. Only the await is bounded,
    never a ``yield`` (a timeout scope left open across one would cancel whatever the consumer awaits)."""
    async with asyncio.timeout_at(deadline):
        return await step


class OpenAIProvider:
    name: ClassVar[str] = "openai"
    description: ClassVar[str] = "any OpenAI-compatible /chat/completions endpoint, over HTTP"
    # Sent on as they are. Not repeat_penalty: it always has a value (1.1 unless set), which OpenAI would refuse
    # on every call, and the servers that take one disagree on its name (vLLM: repetition_penalty).
    sampling: ClassVar[frozenset[str]] = frozenset({"frequency_penalty", "presence_penalty", "top_k", "min_p"})

    @classmethod
    def default_models(cls) -> list[ModelEntry]:
        return []

    @classmethod
    def from_reference(cls, argument: str) -> ModelEntry:
        # openai:MODEL_ID uses OPENAI_BASE_URL / OPENAI_API_KEY like the official client.
        import os

        base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return ModelEntry(name=f"openai:{argument}", provider=cls.name, source=base_url,
                          options={"base_url": base_url, "model_id": argument, "api_key_env": "OPENAI_API_KEY"})

    @classmethod
    def check(cls, entry: ModelEntry) -> None:
        """What ``halguru validate`` asks: the options read as a run reads them (``timeout: -5`` passed it)."""
        cls._options(entry)

    @classmethod
    def create(cls, entry: ModelEntry) -> OpenAIModel:
        base_url, timeout, max_retries, max_wait, deadline = cls._options(entry)
        return OpenAIModel(name=entry.name, base_url=base_url, model_id=entry.options.get("model_id") or entry.name,
                           api_key=resolve_api_key(entry), timeout=timeout, max_retries=max_retries,
                           max_wait=max_wait, deadline=deadline)

    @staticmethod
    def _options(entry: ModelEntry) -> tuple[str, float, int, float, float]:
        """base_url, timeout, max_retries, max_wait and deadline, each checked."""
        opts = entry.options
        base_url, timeout = opts["base_url"], float(opts.get("timeout", 120))
        max_retries, max_wait = int(opts.get("max_retries", 3)), float(opts.get("max_wait", 30))
        deadline = float(opts.get("deadline", DEFAULT_DEADLINE_S))
        # a hand-edited models.yaml: said here as the option it is, not as a run's AttributeError or a wait of -5 s
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http:// or https:// URL, not {base_url!r}")
        for name, value, least in (("timeout", timeout, 0.0), ("deadline", deadline, 0.0)):
            if not value > least:  # NaN too
                raise ValueError(f"{name} must be above 0, not {opts.get(name)!r}")
        for name, value in (("max_retries", max_retries), ("max_wait", max_wait)):
            if not value >= 0:
                raise ValueError(f"{name} must be 0 or more, not {opts.get(name)!r}")
        return base_url, timeout, max_retries, max_wait, deadline
