"""The `openai` provider against endpoints that misbehave: a body that is no event stream, an error or a broken
event mid-stream, a stream cut short, a rate limit. Each is a clear ModelError or a good answer, never an empty
or cut answer that passes for a finished one."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from halguru.errors import ModelError
from halguru.models.base import Message, ModelRequest, TextChunk, ToolCallChunk, ToolSpec, UsageChunk
from halguru.models.openai_compat import OpenAIModel

Reply = Callable[[BaseHTTPRequestHandler, int], None]  # (handler, index of the request)


def _token(text: str) -> str:
    return json.dumps({"choices": [{"delta": {"content": text}}]})


FINISH = json.dumps({"choices": [{"delta": {}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 2}})


def sse(*events: str, done: bool = True) -> Reply:
    def reply(handler: BaseHTTPRequestHandler, _: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        for data in [*events, *(["[DONE]"] if done else [])]:
            handler.wfile.write(f"data: {data}\n\n".encode())

    return reply


def body(status: int, content: str, content_type: str = "application/json", **headers: str) -> Reply:
    def reply(handler: BaseHTTPRequestHandler, _: int) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(content.encode())))
        handler.end_headers()
        handler.wfile.write(content.encode())

    return reply


@pytest.fixture
def peer() -> Iterator[Callable[[Reply], tuple[str, list[float]]]]:
    """An OpenAI-compatible endpoint on loopback answering with the reply given; gives its base URL and the time
    of each request."""
    servers: list[ThreadingHTTPServer] = []

    def start(reply: Reply) -> tuple[str, list[float]]:
        times: list[float] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                times.append(time.monotonic())
                reply(self, len(times) - 1)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", times

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _ask(base_url: str, *, tools: list[ToolSpec] | None = None, **options: float) -> list:
    model = OpenAIModel("peer", base_url, "m", None, **options)  # type: ignore[arg-type]

    async def read() -> list:
        request = ModelRequest(messages=[Message(role="user", content="hi")], tools=tools or [])
        return [c async for c in model.stream(request)]

    return asyncio.run(read())


def _text(chunks: list) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextChunk))


def test_a_stream_cut_before_its_end_fails_rather_than_passing_for_a_whole_answer(peer) -> None:
    base_url, _ = peer(sse(_token("Hello "), _token("wor"), done=False))
    with pytest.raises(ModelError, match="ended the stream before the answer did"):
        _ask(base_url)


def test_an_error_event_mid_stream_is_the_runs_error(peer) -> None:
    error = json.dumps({"error": {"message": "model overloaded", "type": "server_error"}})
    base_url, _ = peer(sse(_token("Hel"), error))
    with pytest.raises(ModelError, match=r"reported an error mid-answer.*model overloaded"):
        _ask(base_url)


@pytest.mark.parametrize("event", ["[1, 2]", '"text"', json.dumps({"choices": [None]}),
                                   json.dumps({"choices": "all"})])
def test_an_event_that_is_no_completion_chunk_is_one_clear_error(peer, event: str) -> None:
    base_url, _ = peer(sse(_token("Hi"), event, FINISH))
    with pytest.raises(ModelError, match="not a chat completion chunk"):
        _ask(base_url)


def test_a_server_that_does_not_stream_gives_its_whole_answer_and_tool_calls(peer) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "clock", "arguments": '{"tz": "UTC"}'}}
    answer = {"choices": [{"message": {"role": "assistant", "content": "It is noon.", "tool_calls": [call]},
                           "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}
    base_url, _ = peer(body(200, json.dumps(answer)))
    chunks = _ask(base_url, tools=[ToolSpec(name="clock", description="time", parameters={"type": "object"})])
    assert _text(chunks) == "It is noon."
    calls = [c.call for c in chunks if isinstance(c, ToolCallChunk)]
    assert [(c.name, c.arguments) for c in calls] == [("clock", {"tz": "UTC"})]
    usage = chunks[-1]
    assert isinstance(usage, UsageChunk) and (usage.prompt_tokens, usage.completion_tokens) == (7, 4)


def test_a_page_that_is_no_completion_names_the_base_url_to_check(peer) -> None:
    base_url, _ = peer(body(200, "<html><body>Welcome to nginx</body></html>", "text/html"))
    with pytest.raises(ModelError, 
                       match=r"HTTP 200 \(text/html\) without a chat completion.*Welcome to nginx.*check the base URL"):
        _ask(base_url)


def test_a_rate_limit_is_waited_out_as_retry_after_says(peer) -> None:
    limited = body(429, '{"error": {"message": "Rate limit reached"}}', Retry_After="1")
    answer = sse(_token("after the wait"), FINISH)
    base_url, times = peer(lambda handler, index: (limited if index < 2 else answer)(handler, index))
    assert _text(_ask(base_url)) == "after the wait"
    assert len(times) == 3 and times[1] - times[0] >= 0.9 and times[2] - times[1] >= 0.9


def test_a_rate_limit_that_outlasts_the_retries_says_so(peer) -> None:
    base_url, times = peer(body(429, '{"error": {"message": "Rate limit reached"}}', Retry_After="0"))
    with pytest.raises(ModelError, match=r"HTTP 429 \(tried 3 times\).*Rate limit reached"):
        _ask(base_url, max_retries=2)
    assert len(times) == 3


def test_a_client_error_is_not_retried(peer) -> None:
    base_url, times = peer(body(400, '{"error": {"message": "bad top_k"}}'))
    with pytest.raises(ModelError, match=r"HTTP 400 for model peer.*bad top_k"):
        _ask(base_url)
    assert len(times) == 1


def _drip(every: float) -> Reply:
    """A stream sent one byte at a time, each well within the per-read timeout: the whole answer takes ~8 s."""
    def reply(handler: BaseHTTPRequestHandler, _: int) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        try:
            for byte in f"data: {_token('slow')}\n\ndata: {FINISH}\n\ndata: [DONE]\n\n".encode():
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(every)
        except OSError:  # the client gave up
            pass

    return reply


def _ask_registered(base_url: str, **options: object) -> list:
    """As a model registered in models.yaml with these options is asked."""
    from halguru.models.base import ModelEntry
    from halguru.models.openai_compat import OpenAIProvider

    entry = ModelEntry(name="peer", provider="openai", source=base_url,
                       options={"base_url": base_url, "model_id": "m", **options})
    model = OpenAIProvider.create(entry)

    async def read() -> list:
        return [c async for c in model.stream(ModelRequest(messages=[Message(role="user", content="hi")]))]

    return asyncio.run(read())


def test_a_server_dripping_its_answer_is_cut_at_the_deadline(peer) -> None:
    """A byte every 50 ms never trips the per-read timeout (5 s here, 120 s by default): only the deadline ends it."""
    base_url, _ = peer(_drip(0.05))
    started = time.monotonic()
    with pytest.raises(ModelError) as failed:
        _ask_registered(base_url, timeout=5, deadline=1.5)
    assert time.monotonic() - started < 4
    assert str(failed.value) == f"{base_url} did not finish its answer within 1.5s (model peer's deadline option)"


def test_the_deadline_covers_the_waits_for_a_rate_limit(peer) -> None:
    base_url, times = peer(body(429, '{"error": {"message": "Rate limit reached"}}', Retry_After="20"))
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"did not finish its answer within 1s"):
        _ask_registered(base_url, deadline=1, max_wait=20)
    assert time.monotonic() - started < 3 and len(times) == 1


def test_a_deadline_below_zero_is_refused_as_the_option_it_is() -> None:
    from halguru.models.base import ModelEntry
    from halguru.models.openai_compat import OpenAIProvider

    entry = ModelEntry(name="peer", provider="openai", source="x",
                       options={"base_url": "http://127.0.0.1:9/v1", "deadline": 0})
    with pytest.raises(ValueError, match="deadline must be above 0, not 0"):
        OpenAIProvider.create(entry)


@pytest.mark.parametrize("depth", [300, 5000])
def test_a_tool_call_whose_arguments_nest_too_deep_is_a_call_that_did_not_parse(peer, depth: int) -> None:
    """A model's call nesting 300 levels was stored as it came, after which the conversation's messages and the
    run's events could not be read back (pydantic writes ~250 levels); 5,000 levels stopped Python's parser with a
    RecursionError. Either is now a call that did not parse, which the loop tells the model; 100 levels pass."""
    from halguru.models.base import MAX_ARGUMENTS_DEPTH, FormatErrorChunk

    def call(levels: int) -> str:
        arguments = json.dumps({"a": 1})
        for _ in range(levels - 1):
            arguments = '{"a": ' + arguments + "}"
        delta = {"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                 "function": {"name": "clock", "arguments": arguments}}]}
        return json.dumps({"choices": [{"delta": delta}]})

    tools = [ToolSpec(name="clock", description="time", parameters={"type": "object"})]
    base_url, _ = peer(sse(call(depth), FINISH))
    refused = [c for c in _ask(base_url, tools=tools) if isinstance(c, FormatErrorChunk)]
    assert [r.reason for r in refused] == [f"tool arguments nest more than {MAX_ARGUMENTS_DEPTH} deep"]
    base_url, _ = peer(sse(call(MAX_ARGUMENTS_DEPTH), FINISH))
    calls = [c.call for c in _ask(base_url, tools=tools) if isinstance(c, ToolCallChunk)]
    assert len(calls) == 1 and calls[0].name == "clock"
