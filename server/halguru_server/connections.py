"""Connections that send no request cannot hold the server: uvicorn's HTTP/1.1 protocol, with a deadline for
each request's head and a cap on connections that wait for one.

uvicorn times out only the keep-alive wait after a response. A connection that sends half a request line, or
trickles its headers a byte at a time, or sends nothing, stays open for good; a thousand of them exhaust a
1,024-file limit and the server accepts nobody (measured: ``ulimit -n 1024``, 1,100 such sockets, every later
request timed out). Here a connection has ``header_timeout`` seconds, from connecting or from its last response,
to finish the next request's line and headers (then 408, closed), and when more than ``max_idle`` connections
wait so, the one that has waited longest is closed: a flood pushes out its own sockets, not the clients that
are being served. Both are per process (each worker of ``--workers`` counts its own).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from halguru_server.settings import ServerSettings

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a cap on waiting connections."""

    header_timeout: ClassVar[float] = 10.0
    max_idle: ClassVar[int] = 512
    _waiting: ClassVar[dict[GuardedH11Protocol, None]] = {}  # oldest first (insertion order)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request line and its headers came
            self._head_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may already have parsed a pipelined request
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._head_done()
        self._head_deadline = self.loop.call_later(self.header_timeout, self._head_timed_out)
        waiting = GuardedH11Protocol._waiting
        waiting[self] = None
        while len(waiting) > self.max_idle:
            oldest = next(iter(waiting))
            oldest._close(timed_out=False)

    def _head_done(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        GuardedH11Protocol._waiting.pop(self, None)

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE:
            self._close(timed_out=True)

    def _close(self, timed_out: bool) -> None:
        """Close a connection that owes its request's head: a 408 if it had started one, else just closed."""
        self._head_done()
        if self.transport.is_closing():
            return
        partial, _ = self.conn.trailing_data
        if timed_out and partial:
            self.transport.write(TIMED_OUT)
        self.transport.close()


def configure_connections(settings: ServerSettings) -> dict[str, Any]:
    """Set this process's limits and return uvicorn's matching options.

    The open-file limit is raised to its hard cap first (Python keeps the soft one as inherited, often 1,024,
    though the hard one allows more). No ``max_idle_connections`` is half of it. The listen backlog, which is
    also how many connections asyncio accepts in one go before any of them is looked at, is a quarter of it
    (at most uvicorn's 2,048): a burst must not take the files that closing the oldest waiting ones frees.
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
    GuardedH11Protocol.max_idle = settings.max_idle_connections or max(16, soft // 2)
    return {"http": GuardedH11Protocol, "backlog": min(2048, max(64, soft // 4))}
