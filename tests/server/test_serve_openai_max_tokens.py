"""A caller's ``max_tokens`` may lower the agent's limit, never raise it: agent.yaml's ``limits.max_tokens`` is the
operator's cap on each model call (what a hosted model bills), and a chat-only key asked for 100,000."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import yaml


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible endpoint on loopback: its base URL and the request bodies it was sent."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            events = [{"choices": [{"delta": {"content": "Hi"}}]},
                      {"choices": [{"delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}}]
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for data in [*map(json.dumps, events), "[DONE]"]:
                self.wfile.write(f"data: {data}\n\n".encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def test_max_tokens_over_the_agents_limit_is_held_to_it(agents_dir, serve, api_key, upstream, monkeypatch) -> None:
    base_url, seen = upstream
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    (agents_dir / "hosted").mkdir()
    (agents_dir / "hosted" / "agent.yaml").write_text(yaml.safe_dump(
        {"name": "hosted", "model": "openai:m", "instructions": "Be brief.", "limits": {"max_tokens": 50}}))
    server = serve()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as client:
        for asked, sent in ((100_000, 50), (20, 20), (None, 50)):
            request = {"model": "hosted", "messages": [{"role": "user", "content": "Hi"}],
                       **({"max_tokens": asked} if asked else {})}
            answer = client.post("/v1/chat/completions", json=request)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"] == "Hi"
            assert seen[-1]["max_tokens"] == sent, (asked, seen[-1])
        client.post("/v1/chat/completions", json={"model": "hosted", "max_completion_tokens": 10**9,
                                                  "messages": [{"role": "user", "content": "Hi"}]})
        assert seen[-1]["max_tokens"] == 50
