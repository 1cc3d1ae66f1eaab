"""A stand-in for Telegram's Bot API on 127.0.0.1, over real HTTP: ``POST /bot<token>/<method>`` with a JSON body,
answered ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...}``.

``sendMessage`` calls are recorded (each with a fresh ``message_id``); ``getMe`` gives the bot's username;
``setWebhook`` records what it is given (an https URL only, as Telegram's).
``failures`` answers the next sendMessage calls with an error instead: ``(429, "Too Many Requests: retry after 1",
{"retry_after": 1})`` as Telegram's flood limit, ``(403, "Forbidden: bot was blocked by the user", {})``, ``(502,
"Bad Gateway", {})`` as an outage.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.channels.serving import LoopbackServer, send_json


class FakeTelegram(LoopbackServer):
    def __init__(self, token: str, username: str) -> None:
        super().__init__(_handler(self))
        self.token = token
        self.username = username
        self.messages: list[dict[str, Any]] = []  # sendMessage's fields, as sent, oldest first
        self.calls: list[str] = []  # every method called, failed ones included
        self.failures: list[tuple[int, str, dict[str, Any]]] = []
        self.webhook: dict[str, Any] = {}  # what setWebhook was given
        self.paths: list[str] = []  # the request paths (they hold the token, as Telegram's do)
        self._lock = threading.Lock()
        self._next_id = 1000

    @property
    def url(self) -> str:
        return self.origin

    def start(self) -> FakeTelegram:
        self.start_serving()
        return self

    def answer(self, method: str, fields: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.calls.append(method)
            if method == "getMe":
                return 200, {"ok": True, "result": {"id": int(self.token.split(":")[0]), "is_bot": True,
                                                    "first_name": "Helper", "username": self.username}}
            if method == "setWebhook":
                if not str(fields.get("url", "")).startswith("https://"):
                    return 400, {"ok": False, "error_code": 400,
                                 "description": "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"}
                self.webhook = fields
                return 200, {"ok": True, "result": True, "description": "Webhook was set"}
            if method != "sendMessage":
                return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            if self.failures:
                status, description, parameters = self.failures.pop(0)
                return status, {"ok": False, "error_code": status, "description": description,
                                **({"parameters": parameters} if parameters else {})}
            text = fields.get("text")
            if not isinstance(text, str) or not text.strip():
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            if len(text.encode("utf-16-le")) // 2 > 4096:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
            self._next_id += 1
            self.messages.append(fields)
            return 200, {"ok": True, "result": {"message_id": self._next_id, "date": 1700000000, "text": text,
                                                "chat": {"id": fields["chat_id"], "type": "private"},
                                                "from": {"id": int(self.token.split(":")[0]), "is_bot": True}}}


def _handler(fake: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            fake.paths.append(self.path)
            prefix, _, method = self.path.removeprefix("/").partition("/")
            if prefix != f"bot{fake.token}":
                return self._json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            fields = json.loads(raw or "{}") if (self.headers.get("Content-Type") or "").startswith(
                "application/json") else {}
            self._json(*fake.answer(method, fields))

        def _json(self, status: int, payload: Any) -> None:
            send_json(self, status, payload)

    return Handler
