"""`halguru serve` on the real model: concurrent OpenAI streams are batched through the llama.cpp slots."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.llama

PROMPTS = ["Name three colours.", "What is a cat?", "Say hello to Bob.", "Write one line about the sea."]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 serving one agent on the bundled model with 4 slots."""
    import uvicorn
    from halguru_server import ServerSettings, create_app

    from halguru.config import reset_settings

    monkeypatch.setenv("HALGURU_LLAMA_SLOTS", "4")
    reset_settings()
    agent = tmp_path / "smol"
    agent.mkdir()
    (agent / "agent.yaml").write_text("name: smol\nmodel: smollm2\ninstructions: You are a concise assistant.\n"
                                      "sampling: {temperature: 0, seed: 5}\nlimits: {max_tokens: 16}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ServerSettings(agents=[agent], dev=True))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)


async def stream(client: httpx.AsyncClient, prompt: str) -> str:
    body = {"model": "smol", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    text = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                data = json.loads(line[6:])
                assert "error" not in data, data
                text += [c["delta"].get("content") or "" for c in data["choices"]]
    return "".join(text)


def test_four_concurrent_openai_streams_are_batched_and_answer_as_alone(server: str) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with httpx.AsyncClient(base_url=server, timeout=120) as client:
            # Every slot first holds the agent's system prompt, so that each request below reuses exactly that
            # prefix from the KV cache, alone or batched: llama.cpp rounds a prompt evaluated in two parts
            # (cached prefix + rest) slightly differently from one evaluated whole, whatever the batching.
            await asyncio.gather(*(stream(client, f"Hi {i}") for i in range(4)))
            alone = [await stream(client, p) for p in PROMPTS]
            together = await asyncio.gather(*(stream(client, p) for p in PROMPTS))
            return alone, list(together)

    alone, together = asyncio.run(scenario())

    assert all(t.strip() for t in alone)
    assert together == alone
    metrics = httpx.get(f"{server}/metrics").text
    assert 'halguru_llama_slots{model="smollm2"} 4.0' in metrics
    figures = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("halguru_llama_") and 'model="smollm2"' in line}
    assert figures["halguru_llama_generated_tokens_total"] > 0
    assert figures["halguru_llama_active_slots"] == 0
    # the four streams shared steps: more tokens generated than llama_decode batches run
    assert figures["halguru_llama_generated_tokens_total"] > figures["halguru_llama_steps_total"]
