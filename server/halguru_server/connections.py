"""Clients that never finish a request cannot hold the server: uvicorn's HTTP/1.1 protocol, with a deadline
for each request's head and body and a cap on connections that owe the server one.

uvicorn times out only the keep-alive wait after a response. A connection that sends half a request line,
trickles its headers a byte at a time, sends nothing, or announces a body and sends one byte of it stays open
for good; a thousand of them exhaust a 1,024-file limit and the server accepts nobody (measured: ``ulimit -n
1024``, 1,100 such sockets of either kind, every later request timed out, and asyncio logged each refused
accept: 107,000 log records in 40 s).

Here a connection has ``header_timeout`` seconds, from connecting or from the first byte of its next request,
to finish that request's line and headers (then 408, closed), and then as long again plus one second per
``min_body_rate`` bytes of its announced body (1 MB assumed when it is chunked) to finish the body (then
closed: the app sees a disconnect). Between requests a connection is idle: uvicorn closes it after the
keep-alive timeout (``keep_alive_timeout``, sent in a ``Keep-Alive: timeout=N`` header), which must outlast
the clients' own pool expiry: a server that closes an idle connection first races the client reusing it (a
request sent as the server closes is reset: measured with httpx's 5 s expiry against uvicorn's 5 s, 14 errors
in 1,600 requests sent 4.9-5.1 s after the last). When more than ``max_idle`` connections are idle or owe the
server a request's head or body, the one that has waited longest is closed, so a flood pushes out its own
sockets, not the clients being served. Both are per process (each worker of ``--workers`` counts its own).

The other way round, a client that stops reading its answer: once the kernel's buffers are full, the answer
waits in this process (a 30 MB history answer: 55 MB of RSS per connection, 20 such readers took the server
from 214 to 1,310 MB) for as long as the client keeps the socket open. An answer whose writing makes no
progress for ``send_timeout`` seconds (nginx's ``send_timeout``) has its connection aborted, which frees what
it held; the app sees a disconnect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from halguru_server.settings import ServerSettings

log = logging.getLogger("halguru.server")


def _refusal(status: bytes, kind: bytes, message: bytes) -> bytes:
    """A whole response written before the app sees a request: the one JSON error shape, then close."""
    body = b'{"error": {"type": "%s", "message": "%s"}}' % (kind, message)
    return (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, len(body), body))


MAX_HEAD_BYTES = 64 * 1024  # a request line and headers (the middleware checks those parsed past this guard)
HEAD_TOO_LARGE_MESSAGE = "the request line and headers are over 64 KiB"
# Each field costs h11's parse and every header lookup after it: 6,000 short ones (30 KB) took 60-90 ms of the
# event loop. Apache's LimitRequestFields default; browsers send about 20, proxies add a few.
MAX_HEAD_FIELDS = 100
TOO_MANY_FIELDS_MESSAGE = f"the request has more than {MAX_HEAD_FIELDS} header fields"
TIMED_OUT = _refusal(b"408 Request Timeout", b"timeout", b"the request was not sent in time")
HEAD_TOO_LARGE = _refusal(b"431 Request Header Fields Too Large", b"too_large", HEAD_TOO_LARGE_MESSAGE.encode())
TOO_MANY_FIELDS = _refusal(b"431 Request Header Fields Too Large", b"too_large", TOO_MANY_FIELDS_MESSAGE.encode())
UNKNOWN_BODY = 1_000_000  # bytes assumed for a chunked body's deadline (the default max_body_bytes)
ACCEPT_FAILED = "socket.accept() out of system resource"
LINGER_S = 2.0  # how long a refused connection's late data is read and dropped before it is closed


class _FramedOnce(h11.Connection):
    """h11 that refuses a request framed two ways (``Content-Length`` and ``Transfer-Encoding``), or with two
    ``Authorization``, ``X-API-Key``, ``api-key`` or ``Host`` headers.

    h11 reads such a body by its chunks and keeps the connection open; a proxy in front that went by the length
    would take the rest of the chunked body for the next request (request smuggling). RFC 9112 §6.1 lets a server
    refuse it and says the connection must close: as a parse error, uvicorn answers 400 and closes."""

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = [name for name, _ in event.headers]
            if b"content-length" in names and b"transfer-encoding" in names:
                raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding", 400)
            for single in _SINGLE:  # two keys or hosts: a proxy may check one and halguru use the other
                if names.count(single) > 1:
                    raise h11.RemoteProtocolError(f"more than one {single.decode()} header", 400)
        return event


_SINGLE = (b"authorization", b"x-api-key", b"api-key", b"host")  # fields a request may hold once (RFC 9110 §5.3, §7.2)
Phase = Literal["idle", "head", "body", "drain"]  # what a connection waits for: idle, between requests


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with head and body deadlines and a cap on connections that owe a request."""

    header_timeout: ClassVar[float] = 10.0
    send_timeout: ClassVar[float] = 60.0
    min_body_rate: ClassVar[float] = 16 * 1024  # bytes a second: a 128 kbit/s link
    max_idle: ClassVar[int] = 512
    max_head_bytes: ClassVar[int] = MAX_HEAD_BYTES  # h11 checks only heads still incomplete
    _owing: ClassVar[dict[GuardedH11Protocol, None]] = {}  # longest owing first (insertion order)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _FramedOnce(h11.SERVER, self.config.h11_max_incomplete_event_size or self.max_head_bytes)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Phase | None = None
        self._head_bytes = 0
        self._head_lines = 0
        self._refused = False
        self._stalled: asyncio.TimerHandle | None = None  # writing paused (the client reads nothing) since then

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.send_timeout, self._stalled_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _stalled_out(self) -> None:
        """The client read none of its answer for ``send_timeout``: drop the connection and what it buffered."""
        self._stalled = None
        log.info("connection aborted: its client read nothing of the answer", extra={"fields": {
            "seconds": self.send_timeout, "buffered": self.transport.get_write_buffer_size()}})
        self.transport.abort()  # not close(): that waits for the buffer to be sent, for ever

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect("head")

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused head: read and dropped until the lingering close
        if self._phase == "idle":  # the next request's first bytes: its head's deadline starts now
            self._expect("head")
        if self._phase == "head" and self.conn.their_state is h11.IDLE:
            # before h11 parses it: a head that arrives whole in one read (up to 256 KiB) passes h11's own limit
            end = _head_end(data)
            self._head_bytes += len(data) if end < 0 else end
            self._head_lines += data.count(b"\n", 0, None if end < 0 else end)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(HEAD_TOO_LARGE)
                return
            if self._head_lines > MAX_HEAD_FIELDS:  # the request line's end is one of them: fields + 1
                self._refuse(TOO_MANY_FIELDS)
                return
        super().data_received(data)
        self._progress()

    def _refuse(self, response: bytes) -> None:
        """Answer and close without the app. The close lingers: a socket closed with the client's data unread
        is reset, and the reset can overtake the answer, so what still comes is read and dropped for up to
        LINGER_S while our side is shut (the client then reads the answer and closes). Meanwhile it still counts
        among the connections that owe a request, so a flood of such heads is capped like any other."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = None
        self._refused = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def on_response_complete(self) -> None:
        # Answered before the request's body came in whole (a 413, a 401 before the body was read): the rest of
        # that body gets header_timeout to arrive, whatever length the client announced (its own deadline was a
        # second per 16 KiB of it: for ever, for a made-up 100 GB), and the next request's head is guarded again.
        unread = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()  # may already have parsed a pipelined request
        if unread and not self.transport.is_closing():
            self._expect("drain")
            return
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            # idle until the next request's first byte: uvicorn's keep-alive timer closes it, not a deadline
            self._expect("head" if self.conn.trailing_data[0] else "idle")
        else:
            self._progress()

    def connection_lost(self, exc: Exception | None) -> None:
        self._settled()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        super().connection_lost(exc)

    def _progress(self) -> None:
        state = self.conn.their_state
        if self._phase == "drain":
            if self.conn.our_state is h11.DONE:  # still the answered request's body
                return
            self._phase = None  # that body ended and the next request began: guarded as any other
            if state is h11.IDLE or state is h11.SEND_BODY:
                self._expect("head" if state is h11.IDLE else "body")
                return
        if state is h11.SEND_BODY:
            if self._phase == "head":  # the head is in: the body's deadline starts
                self._expect("body")
        elif state is not h11.IDLE:  # the whole request came (or the connection failed)
            self._settled()

    def _expect(self, phase: Phase) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase == "head":
            self._head_bytes = self._head_lines = 0
        if phase != "idle":
            seconds = self.header_timeout
            if phase == "body":
                seconds += self._body_length() / self.min_body_rate
            self._deadline = self.loop.call_later(seconds, self._timed_out)
        owing = GuardedH11Protocol._owing
        if self not in owing:  # a body keeps the head's place: the flood's oldest go first
            owing[self] = None
            while len(owing) > self.max_idle:
                next(iter(owing))._close(timed_out=False)

    def _body_length(self) -> int:
        for name, value in self.headers or ():
            if name == b"content-length" and value.isdigit():
                return int(value)
        return UNKNOWN_BODY

    def _settled(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = None
        GuardedH11Protocol._owing.pop(self, None)

    def _timed_out(self) -> None:
        self._deadline = None
        if self._phase is not None:
            self._close(timed_out=True)

    def _close(self, timed_out: bool) -> None:
        """Close a connection that owes its request: a 408 if its head had begun (a body's request already
        belongs to the app, which sees a disconnect), else just closed."""
        phase = self._phase
        self._settled()
        if self.transport.is_closing():
            return
        partial, _ = self.conn.trailing_data
        if timed_out and phase == "head" and partial:
            self.transport.write(TIMED_OUT)
        self.transport.close()


def _head_end(data: bytes) -> int:
    """Where the head in ``data`` ends (its blank line, CRLF or a bare LF as h11 accepts), else -1."""
    ends = [at for at in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if at >= 0]
    return min(ends, default=-1)


def configure_connections(settings: ServerSettings) -> dict[str, Any]:
    """Set this process's limits and return uvicorn's matching options.

    The open-file limit is raised to its hard cap first (Python keeps the soft one as inherited, often 1,024,
    though the hard one allows more). No ``max_idle_connections`` is half of it. The listen backlog, which is
    also how many connections asyncio accepts in one go before any of them is looked at, is a quarter of it
    (at most uvicorn's 2,048): a burst must not take the files that closing the longest owing ones frees.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # some sandboxes refuse: keep what we have
            pass
    GuardedH11Protocol.header_timeout = settings.header_timeout
    GuardedH11Protocol.send_timeout = settings.send_timeout
    GuardedH11Protocol.max_idle = settings.max_idle_connections or max(16, soft // 2)
    # h11's own cap on a head still incomplete (16 KiB) raised to ours, which answers first and lingers;
    # the keep-alive timeout told to clients that read it (undici, Firefox) so they drop the connection first
    return {"http": GuardedH11Protocol, "backlog": min(2048, max(64, soft // 4)),
            "h11_max_incomplete_event_size": GuardedH11Protocol.max_head_bytes,
            "timeout_keep_alive": settings.keep_alive_timeout,
            "headers": [("keep-alive", f"timeout={settings.keep_alive_timeout}")]}


def quiet_accept_failures(loop: asyncio.AbstractEventLoop, every: float = 10.0) -> None:
    """One warning per ``every`` seconds when accepting fails for want of files, with how many failed:
    asyncio logs a traceback for each failed accept (thousands a second under a flood)."""
    previous = loop.get_exception_handler()
    failed, last = 0, 0.0

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal failed, last
        if context.get("message") != ACCEPT_FAILED:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        failed += 1
        if time.monotonic() - last >= every:
            log.warning("new connections refused: out of open files", extra={"fields": {
                "refused": failed, "error": str(context.get("exception"))}})
            failed, last = 0, time.monotonic()

    loop.set_exception_handler(handler)
