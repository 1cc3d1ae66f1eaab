"""A stand-in for Twilio's REST API on 127.0.0.1: the Messages resource the channel uses, over real HTTP.

It speaks what the official ``twilio`` client sends and reads: form-encoded POSTs with basic auth (account SID
and auth token), JSON answers shaped like Twilio's (``sid``, ``status``, RFC 2822 dates), Twilio's error body on
a failure, the list filters ``To``, ``From`` and ``DateSent>`` (a date, or the client's date-time), pages with
``next_page_uri``.

A created message is ``queued`` with no ``date_sent`` until ``deliver()``, as at Twilio; one to a sender in
``unsubscribed`` (who texted STOP) is refused with error 21610, as Twilio refuses it. ``drop_next`` makes the
server record the next message and close the connection without answering: the sender's outcome is unknown,
as when a worker is killed between Twilio's accepting a message and its recording the answer.
"""

from __future__ import annotations

import base64
import secrets
import threading
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.channels.serving import LoopbackServer, send_json

API_VERSION = "2010-04-01"


class FakeTwilio(LoopbackServer):
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        super().__init__(_handler(self))
        self.messages: list[dict[str, Any]] = []  # oldest first
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.drop_next = 0  # record this many messages without answering
        self.unsubscribed: set[tuple[str, str]] = set()  # (our number, sender) that texted STOP: refused, 21610
        self.page_size_cap = 1000
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.origin

    def start(self) -> FakeTwilio:
        self.start_serving()
        return self

    def bodies(self) -> list[str]:
        with self._lock:
            return [m["body"] for m in self.messages]

    def deliver(self) -> None:
        """Twilio sent every queued message."""
        now = format_datetime(datetime.now(UTC), usegmt=True)
        with self._lock:
            for message in self.messages:
                if message["status"] == "queued":
                    message.update(status="sent", date_sent=now, date_updated=now)

    # -- the Messages resource ---------------------------------------------------------------------------
    def create(self, form: dict[str, str]) -> dict[str, Any]:
        now = format_datetime(datetime.now(UTC), usegmt=True)
        sid = "SM" + secrets.token_hex(16)
        message = {
            "sid": sid, "account_sid": self.account_sid, "api_version": API_VERSION,
            "to": form["To"], "from": form["From"], "body": form["Body"], "status": "queued",
            "direction": "outbound-api", "num_segments": "1", "num_media": "0", "price": None,
            "price_unit": "USD", "error_code": None, "error_message": None, "messaging_service_sid": None,
            "date_created": now, "date_updated": now, "date_sent": None,
            "status_callback": form.get("StatusCallback"),
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        with self._lock:
            self.messages.append(message)
        return message

    def select(self, query: dict[str, str]) -> list[dict[str, Any]]:
        after = _date(query["DateSent>"]) if query.get("DateSent>") else None
        with self._lock:
            found = [m for m in reversed(self.messages)  # newest first, as Twilio lists
                     if m["to"] == query.get("To", m["to"]) and m["from"] == query.get("From", m["from"])]
        if after is not None:
            # a message still queued has no date_sent, so a DateSent filter leaves it out
            found = [m for m in found if m["date_sent"] and parsedate_to_datetime(m["date_sent"]).date() >= after]
        return found


def _date(value: str) -> Any:
    """``DateSent>``'s value: Twilio compares days (YYYY-MM-DD); the Python client sends a date-time."""
    return datetime.strptime(value[:10], "%Y-%m-%d").date()


def _handler(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    base = f"/{API_VERSION}/Accounts/{fake.account_sid}/Messages.json"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures
            pass

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path))
            if not self._authorized():
                return
            parts = urlsplit(self.path)
            if parts.path != base:
                return self._error(404, 20404, "The requested resource was not found")
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            size = min(int(query.get("PageSize", 50)), fake.page_size_cap)
            page = int(query.get("Page", 0))
            found = fake.select(query)
            chunk = found[page * size:(page + 1) * size]
            keep = urlencode({k: v for k, v in query.items() if k not in ("Page", "PageSize")})
            nxt = f"{base}?{keep}&PageSize={size}&Page={page + 1}" if (page + 1) * size < len(found) else None
            self._json(200, {"messages": chunk, "page": page, "page_size": size, "start": page * size,
                             "end": page * size + len(chunk), "uri": self.path, "next_page_uri": nxt,
                             "first_page_uri": f"{base}?{keep}&PageSize={size}&Page=0", "previous_page_uri": None})

        def do_POST(self) -> None:
            fake.requests.append(("POST", self.path))
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if not self._authorized():
                return
            if self.path != base:
                return self._error(404, 20404, "The requested resource was not found")
            missing = [name for name in ("To", "From", "Body") if not form.get(name)]
            if missing:
                return self._error(400, 21602 if "Body" in missing else 21604, f"A '{missing[0]}' is required.")
            if (form["From"], form["To"]) in fake.unsubscribed:
                return self._error(400, 21610, "Attempt to send to unsubscribed recipient")
            if len(form["Body"]) > 1600:
                return self._error(400, 21617, "The concatenated message body exceeds the 1600 character limit")
            message = fake.create(form)
            if fake.drop_next:
                fake.drop_next -= 1
                self.close_connection = True  # accepted, but the sender never hears so
                return
            self._json(201, message)

        def _authorized(self) -> bool:
            expected = base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                self._error(401, 20003, "Authenticate")
                return False
            return True

        def _error(self, status: int, code: int, message: str) -> None:
            self._json(status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                                "status": status})

        def _json(self, status: int, payload: Any) -> None:
            send_json(self, status, payload)

    return Handler
