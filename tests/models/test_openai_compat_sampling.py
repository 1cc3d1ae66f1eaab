"""The `openai` provider sends the run's stop strings, penalties, top_k and min_p on to its endpoint (which stops
generating there itself), and nothing it was not asked for."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from halguru.models.base import Message, ModelRequest, SamplingSettings, TextChunk
from halguru.models.openai_compat import OpenAIModel

STREAM = [{"choices": [{"delta": {"content": "1, 2"}}]},
          {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}]


@pytest.fixture
def peer() -> Iterator[tuple[str, list[dict]]]:
    """An OpenAI-compatible endpoint on loopback that records each request body and streams STREAM."""
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for data in [*map(json.dumps, STREAM), "[DONE]"]:
                self.wfile.write(f"data: {data}\n\n".encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies
    server.shutdown()
    server.server_close()


def _ask(base_url: str, settings: SamplingSettings) -> str:
    model = OpenAIModel("peer", base_url, "m", None)

    async def read() -> str:
        request = ModelRequest(messages=[Message(role="user", content="count")], settings=settings)
        return "".join([c.text async for c in model.stream(request) if isinstance(c, TextChunk)])

    return asyncio.run(read())


def test_stop_and_penalties_go_to_the_endpoint_only_when_set(peer) -> None:
    base_url, bodies = peer
    assert _ask(base_url, SamplingSettings(stop=[", 3", "\n"], frequency_penalty=0.5, presence_penalty=-1)) == "1, 2"
    assert (bodies[0]["stop"], bodies[0]["frequency_penalty"], bodies[0]["presence_penalty"]) == ([", 3", "\n"],
                                                                                                   0.5, -1)
    _ask(base_url, SamplingSettings())
    assert not {"stop", "frequency_penalty", "presence_penalty", "seed", "top_k", "min_p", "repeat_penalty"} & set(
        bodies[1])


def test_an_endpoint_is_sent_at_most_openais_four_stop_strings(peer) -> None:
    """api.openai.com refuses a fifth (the run failed); the agent's loop cuts the answer at the others."""
    base_url, bodies = peer
    _ask(base_url, SamplingSettings(stop=["a", "b", "c", "d", "e", "f"]))
    assert bodies[0]["stop"] == ["a", "b", "c", "d"]


def test_top_k_and_min_p_go_on_under_the_names_vllm_and_llama_server_read(peer) -> None:
    """They are not OpenAI's own fields, but vLLM, llama.cpp's server, SGLang and LM Studio take them as they are;
    0 (off) is sent too. The repetition penalty is not sent: it always has a value, which OpenAI would refuse."""
    base_url, bodies = peer
    _ask(base_url, SamplingSettings(top_k=20, min_p=0.05, repeat_penalty=1.3))
    _ask(base_url, SamplingSettings(top_k=0, min_p=0.0))
    assert [(b["top_k"], b["min_p"]) for b in bodies] == [(20, 0.05), (0, 0.0)]
    assert not {"repeat_penalty", "repetition_penalty"} & set(bodies[0])


def test_one_tool_call_per_reply_is_asked_of_the_endpoint_only_when_the_caller_asked(peer) -> None:
    """The OpenAI endpoint's ``parallel_tool_calls: false`` reaches an agent on an OpenAI-compatible model."""
    from halguru.models.base import ToolSpec

    base_url, bodies = peer
    model = OpenAIModel("peer", base_url, "m", None)
    tools = [ToolSpec(name="get_weather", description="", parameters={"type": "object", "properties": {}})]

    async def ask(parallel: bool) -> None:
        request = ModelRequest(messages=[Message(role="user", content="weather?")], tools=tools,
                               parallel_tool_calls=parallel)
        [_ async for _ in model.stream(request)]

    asyncio.run(ask(False))
    asyncio.run(ask(True))
    assert [body.get("parallel_tool_calls") for body in bodies] == [False, None]
