"""A stand-in for Slack's Web API on 127.0.0.1: ``chat.postMessage``, over real HTTP, as slack_sdk's
``WebClient`` calls it (a JSON body, ``Authorization: Bearer xoxb-...``) and reads it (``{"ok": ..., ...}``).

Each posted message is recorded (channel, text, thread_ts) with a fresh ``ts``. ``failures`` answers the next
calls with an error instead: ``(429, "ratelimited", {"Retry-After": "1"})`` as Slack's rate limit, ``(200,
"channel_not_found", {})`` as Slack's refusals (HTTP 200, ``ok: false``), ``(503, "", {})`` as an outage.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.channels.serving import LoopbackServer, send_json


class FakeSlack(LoopbackServer):
    def __init__(self, token: str) -> None:
        super().__init__(_handler(self))
        self.token = token
        self.messages: list[dict[str, Any]] = []  # posted, oldest first
        self.calls = 0  # chat.postMessage requests, failed ones included
        self.failures: list[tuple[int, str, dict[str, str]]] = []
        self.drop_next = 0  # post this many messages and close the connection without answering
        self.reads: list[str] = []  # conversations.history / conversations.replies calls
        self._lock = threading.Lock()
        self._ts = time.time()

    @property
    def url(self) -> str:
        return f"{self.origin}/api"

    def start(self) -> FakeSlack:
        self.start_serving()
        return self

    def post(self, fields: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.calls += 1
            if self.failures:
                status, error, headers = self.failures.pop(0)
                return status, {"ok": False, "error": error}, headers
            if not fields.get("channel"):
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            if not str(fields.get("text") or ""):
                return 200, {"ok": False, "error": "no_text"}, {}
            if len(str(fields["text"])) > 40_000:
                return 200, {"ok": False, "error": "msg_too_long"}, {}
            self._ts = max(self._ts + 0.0001, time.time())  # Slack's ts is its clock at posting, not at our start
            ts = f"{self._ts:.6f}"
            message = {"channel": fields["channel"], "text": fields["text"], "ts": ts,
                       "thread_ts": fields.get("thread_ts"), "bot_id": "B0BOT", "type": "message"}
            self.messages.append(message)
        return 200, {"ok": True, "channel": fields["channel"], "ts": ts,
                     "message": {"type": "message", "text": fields["text"], "ts": ts, "bot_id": "B0BOT"}}, {}


    def read(self, method: str, query: dict[str, str]) -> dict[str, Any]:
        """conversations.history (the channel's top-level messages) or .replies (a thread's), since ``oldest``."""
        with self._lock:
            self.reads.append(method)
            found = [m for m in self.messages if m["channel"] == query.get("channel")
                     and float(m["ts"]) >= float(query.get("oldest") or 0)
                     and (m["thread_ts"] == query.get("ts") if method == "conversations.replies"
                          else not m["thread_ts"])]
        return {"ok": True, "messages": list(reversed(found)), "has_more": False}


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                return self._json(200, {"ok": False, "error": "invalid_auth"})
            method = self.path.split("?")[0].removeprefix("/api/")
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                fields = json.loads(raw or "{}")
            else:  # the client posts every method, a "GET" one's arguments as a form
                fields = {k: v[-1] for k, v in parse_qs(raw).items()}
            if method in ("conversations.history", "conversations.replies"):
                return self._json(200, fake.read(method, fields))
            if method != "chat.postMessage":
                return self._json(404, {"ok": False, "error": "unknown_method"})
            status, body, headers = fake.post(fields)
            if fake.drop_next and body.get("ok"):
                fake.drop_next -= 1
                self.close_connection = True  # posted, but the sender never hears so
                return
            self._json(status, body, headers)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            send_json(self, status, payload, headers)

    return Handler
