"""The errors a ``halguru.client`` call raises, and how a refused response or a failed connection becomes one.

Kept apart from the clients so that the one-line error shapes (``str()`` of each is one line, whatever the body)
live in one place; ``halguru.client`` re-exports them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from halguru.durations import retry_after_seconds


class ClientError(Exception):
    """The server said no (or did not answer in time: ``TimedOut``; could not be reached: ``Unreachable``; a stream
    cut: ``StreamCut``): ``status``, its error ``type`` (``not_found``, ``queue_full``...) and message;
    ``retry_after``: the seconds its Retry-After asked for; ``request_id``: its ``X-Request-ID`` (in its log).
    ``str()`` of it is one line, whatever the body (a proxy's HTML page is read as text)."""

    def __init__(self, status: int, type: str, message: str, retry_after: float | None = None,
                 request_id: str | None = None):
        super().__init__(" ".join(f"{status} {type}: {message}".split())
                         + (f" (request {request_id})" if request_id else ""))
        self.status, self.type, self.message, self.retry_after = status, type, message, retry_after
        self.request_id = request_id


class AuthError(ClientError):
    """401 (no key, a wrong or revoked key) or 403 (the key may not do this)."""


class NotFound(ClientError):
    """404: no such agent, conversation or run (or not yours: the server does not tell the difference)."""


class Conflict(ClientError):
    """409: the object is not in a state for this (a run no longer paused...)."""


class RateLimited(ClientError):
    """429 after every retry."""


class Unavailable(ClientError):
    """503 after every retry: the model's queue is full, or the server is shutting down."""


class TakenOver(ClientError):
    """202: an operator has taken the conversation over; the message waits for them, no run was started."""


class StreamError(ClientError):
    """A stream ended with a fatal ``error`` event the server writes itself (``shutdown``, ``internal``...)."""


class StreamCut(StreamError, httpx.TransportError):
    """A stream that broke off (the connection lost, a proxy's limit) or ended before its run's ``run_finished``:
    ``type`` ``stream_cut``; an ``httpx.TransportError`` too. The message names the run: ``run(run_id)`` says
    how it ended (a server that lost the client stops its run)."""


class TimedOut(ClientError, httpx.TimeoutException):
    """No answer in time (the client's ``timeout``): ``status`` 0, ``type`` ``timeout``; an
    ``httpx.TimeoutException`` too. The server may still have taken a message: send it again with the same
    ``idempotency_key`` to get its answer rather than a second turn."""


class Unreachable(ClientError, httpx.ConnectError):
    """The server could not be reached (connection refused, an unknown host, a TLS failure): ``status`` 0, ``type``
    ``unreachable``; an ``httpx.ConnectError`` too. Nothing was sent: the request can be sent again as it is."""


_BY_STATUS: dict[int, type[ClientError]] = {401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict,
                                            429: RateLimited, 503: Unavailable}


@contextmanager
def in_time(request: httpx.Request) -> Iterator[None]:
    """Turn httpx's timeout (whose message is empty) into ``TimedOut``, naming the call and the limit, and a failed
    connection into ``Unreachable``, naming the server."""
    try:
        yield
    except httpx.TimeoutException as exc:
        phase = {httpx.ConnectTimeout: "connect", httpx.WriteTimeout: "write", httpx.PoolTimeout: "pool"}.get(
            type(exc), "read")
        limit = request.extensions.get("timeout", {}).get(phase)
        within = f" within {limit:g} s" if isinstance(limit, int | float) else ""
        what = "could not connect" if phase == "connect" else f"no answer{within} ({phase} timeout)"
        if phase == "connect":
            what += within
        elif request.method == "POST":
            what += "; it may have been acted on: send a message again with the same idempotency_key"
        error = TimedOut(0, "timeout", f"{request.method} {request.url.path}: {what}")
        error.request = request
        raise error from exc
    except httpx.ConnectError as exc:
        if isinstance(exc, ClientError):
            raise
        where = f"{request.url.scheme}://{request.url.netloc.decode('ascii', 'replace')}"
        unreachable = Unreachable(0, "unreachable", f"{request.method} {request.url.path}: cannot connect to "
                                                    f"{where}: {exc or type(exc).__name__}; is the server up?")
        unreachable.request = request
        raise unreachable from exc


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or None."""
    return retry_after_seconds(response.headers.get("retry-after"))


def error_for(response: httpx.Response, body: bytes) -> ClientError:
    """The exception for a refused request, from the server's ``{"error": {"type", "message"}}`` body."""
    text = " ".join(body.decode("utf-8", "replace")[:2000].split())  # a proxy's HTML page: one line
    kind, message = "http_error", text[:500] or response.reason_phrase
    try:
        detail = json.loads(body)["error"]
        kind, message = str(detail.get("type", kind)), str(detail.get("message", message))
    except (ValueError, KeyError, TypeError):
        pass
    return _BY_STATUS.get(response.status_code, ClientError)(response.status_code, kind, message,
                                                             retry_after(response),
                                                             response.headers.get("x-request-id"))
