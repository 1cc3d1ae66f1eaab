"""A third-party channel plugin for the worker tests ("hook": replies are POSTed to a URL), installed like
pip would, and the provider it talks to: a real HTTP server on loopback that records what it got and can
SIGKILL the worker the moment a message arrives (after the side effect, before the worker hears back)."""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.feedback_plugins import install

SOURCE = '''
import time
import httpx
from halguru.plugins.hookspecs import hookimpl


class HookChannel:
    name = "hook"

    def __init__(self, agent, config, folder):
        self.url = config["url"]

    async def send(self, message, once):
        async def deliver():
            async with httpx.AsyncClient(timeout=10) as client:
                r = await client.post(self.url, json={"job": message.job_id, "text": message.text,
                                                      "to": message.reply.get("to")})
                r.raise_for_status()
                return r.json()

        async def find(started):
            async with httpx.AsyncClient(timeout=10) as client:
                got = (await client.get(self.url)).json()
            return next((m for m in got if m["job"] == message.job_id), None)

        value = await once("part:0", deliver, find)
        return [value["id"]]


@hookimpl
def register_channels(register):
    register("hook", HookChannel)
'''


def install_hook_channel(site: Path) -> Path:
    return install(site, "hook", "halguru_hook_channel", SOURCE)


class Provider:
    """Records each POSTed message; ``kill_on`` (a count) SIGKILLs ``victim`` when that message arrives."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.victim: int | None = None
        self.kill_on: int | None = None
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with provider.lock:
                    self._answer(list(provider.messages))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with provider.lock:
                    body["id"] = f"msg{len(provider.messages) + 1}"
                    provider.messages.append(body)
                    kill = provider.kill_on == len(provider.messages) and provider.victim is not None
                if kill:  # the message is delivered; the worker dies before it hears so
                    os.kill(provider.victim, signal.SIGKILL)  # type: ignore[arg-type]
                    return
                self._answer(body)

            def _answer(self, value: Any) -> None:
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
