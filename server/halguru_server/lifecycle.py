"""How runs end when the server stops, and how a run's events reach a response.

SIGTERM first marks the server draining (``/readyz`` answers 503) and, after ``drain_delay`` seconds in which
it still serves, lets uvicorn stop accepting connections. In-flight runs then get ``shutdown_timeout``
seconds; those still going are cancelled with ``task.cancel("shutdown")``: the runtime stores them as
interrupted by shutdown (not "cancelled by the user"), a stream gets a final ``error`` event, a JSON answer
a 503. uvicorn's own grace timeout is longer, so it never cuts a stream first.

A run is produced by its own task (:class:`Pump`), never by the response's: the response waits on a queue,
so it can send SSE keep-alive comments during long tool calls and queue waits, and the run's task is the
one shutdown (or the client leaving) cancels.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

from halguru.agents.events import Event, Token
from halguru.agents.runtime import SHUTDOWN  # the cancel message the runtime stores as interrupted

log = logging.getLogger("halguru.server")
CLIENT_GONE = "client disconnected"
_END = object()
_QUIET = object()  # no item came in the time waited
T = TypeVar("T")


@asynccontextmanager
async def closing(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """``contextlib.aclosing`` for any async iterator: closes it (and so its run) if it can be closed."""
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class Lifecycle:
    """Draining and the in-flight runs of one app."""

    def __init__(self, drain_delay: float, shutdown_timeout: float):
        self.drain_delay, self.shutdown_timeout = drain_delay, shutdown_timeout
        self.draining = False  # SIGTERM seen: not ready
        self.stopping = False  # no longer accepting: new runs get 503
        self.interrupted = False  # grace period over: in-flight runs were cancelled
        self.inflight: set[asyncio.Task[Any]] = set()
        self.on_stopping: list[Callable[[], None]] = []  # called when the server stops accepting (the worker)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._drained: asyncio.TimerHandle | None = None  # the end of drain_delay, then of the grace period
        self._graced: asyncio.TimerHandle | None = None

    # -- SIGTERM -------------------------------------------------------------------------------------
    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Chain a SIGTERM and a SIGINT handler before uvicorn's (main thread only: a server in a test thread
        has none). Ctrl-C drains as SIGTERM does: left to uvicorn, it cut a JSON answer with a 500 and a
        traceback, and stored the run as cancelled by the user; a second Ctrl-C still quits at once."""
        self.loop = loop
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)

            def on_signal(sig: int, frame: Any, previous: Any = previous) -> None:
                self.begin(lambda: previous(sig, frame) if callable(previous) else None)

            signal.signal(signum, on_signal)

    def begin(self, stop: Callable[[], None]) -> None:
        """Start draining now; ``stop`` (uvicorn's exit) runs after ``drain_delay``. A second signal while
        draining stops at once: no more waiting, the runs in flight interrupted (stored as such, answered 503);
        a third is uvicorn's own (quit without waiting for connections). Thread-safe."""
        if self.loop is None:
            stop()
            return
        self.loop.call_soon_threadsafe(self._now if self.draining else self._begin, stop)

    def _begin(self, stop: Callable[[], None]) -> None:
        self.draining = True
        log.info("draining", extra={"fields": {"drain_delay": self.drain_delay, "runs": len(self.inflight)}})
        assert self.loop is not None
        self._drained = self.loop.call_later(self.drain_delay, self._stopping, stop)

    def _stopping(self, stop: Callable[[], None]) -> None:
        """Stop accepting; the runs in flight have ``shutdown_timeout`` to finish."""
        self.stopping = True
        for callback in self.on_stopping:
            callback()
        stop()
        assert self.loop is not None
        self._graced = self.loop.call_later(self.shutdown_timeout, self.interrupt)

    def _now(self, stop: Callable[[], None]) -> None:
        """A second signal: what the drain and the grace period would do, now (left to uvicorn, it waited for
        every answer in flight, and a run cut at exit was stored as cancelled by the user)."""
        if not self.stopping:
            if self._drained is not None:
                self._drained.cancel()
            self._stopping(stop)
        else:
            stop()  # uvicorn's: quit without waiting for connections
        if self._graced is not None:
            self._graced.cancel()
        log.warning("stopping now (signal again)", extra={"fields": {"runs": len(self.inflight)}})
        self.interrupt()

    def interrupt(self) -> None:
        """The grace period is over: cancel every in-flight run (stored as interrupted by shutdown)."""
        self.interrupted = True
        if self.inflight:
            log.warning("grace period over: interrupting runs", extra={"fields": {"runs": len(self.inflight)}})
        for task in list(self.inflight):
            task.cancel(SHUTDOWN)


class Pump:
    """Runs ``events`` in a task of its own; :meth:`items` yields them, or None every ``keepalive`` seconds
    of silence. Closing the consumer (the client left) cancels the run, or with ``finish_alone`` (a message
    with an Idempotency-Key, whose retry is to get the whole answer) leaves it running to its end (a shutdown's
    grace period still cuts it: the task is in ``lifecycle.inflight``)."""

    def __init__(self, lifecycle: Lifecycle, events: AsyncIterator[Event], finish_alone: bool = False):
        self.lifecycle = lifecycle
        self.finish_alone = finish_alone
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._produce(events))
        lifecycle.inflight.add(self.task)
        self.task.add_done_callback(lifecycle.inflight.discard)

    async def _produce(self, events: AsyncIterator[Event]) -> None:
        try:
            async with closing(events) as stream:
                async for event in stream:
                    self.queue.put_nowait(event)
        except BaseException as exc:  # handed to the consumer (CancelledError included), then re-raised
            self.queue.put_nowait(exc)
            raise
        finally:
            self.queue.put_nowait(_END)

    @property
    def shut_down(self) -> bool:
        """The run was cut by the end of the shutdown grace period."""
        return self.lifecycle.interrupted and self.task.cancelled()

    async def items(self, keepalive: float | None = None, coalesce: float = 0.0) -> AsyncIterator[Event | None]:
        """The run's events; None for each ``keepalive`` seconds without one. Raises what the run raised
        (asyncio.CancelledError once shutdown cut it).

        ``coalesce``: tokens that come less than this many seconds after the last token given out are held
        and given out together, as one token event (of the last one's seq), when that time is up or another
        event comes. A lone token, and the first after a pause, go out at once. Each event a stream writes
        costs the server a socket write and the client a parse, per stream, per token: with several streams
        that is CPU taken from the model's threads (see docs/architecture.md)."""
        loop = asyncio.get_running_loop()
        held: Token | None = None
        flushed = float("-inf")  # when the last token was given out
        try:
            while True:
                wait = keepalive if held is None else max(0.0, flushed + coalesce - loop.time())
                item = await self._next(wait)
                if item is _QUIET and held is None:
                    yield None
                    continue
                if coalesce and isinstance(item, Token):
                    if held is not None and _same_stream(held, item):
                        held = held.model_copy(update={"text": held.text + item.text, "seq": item.seq,
                                                       "ts": item.ts})
                    else:
                        if held is not None:
                            yield held
                            flushed = loop.time()
                        held = item
                    if loop.time() >= flushed + coalesce:
                        yield held
                        held, flushed = None, loop.time()
                    continue
                if held is not None:
                    yield held
                    held, flushed = None, loop.time()
                if item is _QUIET:
                    continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    if isinstance(item, asyncio.CancelledError):
                        raise RunCut(self.shut_down)
                    raise item
                yield item
        finally:
            await self.close()

    async def _next(self, wait: float | None) -> Any:
        """The next item, or _QUIET after ``wait`` seconds without one (None: wait as long as it takes)."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        try:
            async with asyncio.timeout(wait):
                return await self.queue.get()
        except TimeoutError:
            return _QUIET

    async def close(self) -> None:
        if self.finish_alone and not self.task.done():
            return  # not awaited: the consumer may be being cancelled, and awaiting would cancel the run too
        if not self.task.done():
            self.task.cancel(CLIENT_GONE)
        with suppress(BaseException):
            await self.task

    async def collect(self) -> list[Event]:
        return [e async for e in self.items() if e is not None]


def _same_stream(a: Token, b: Token) -> bool:
    """Two tokens of one model call's answer (a sub-run's tokens are another stream)."""
    return (a.run_id, a.step, a.parent_run_id) == (b.run_id, b.step, b.parent_run_id)


class RunCut(Exception):
    """The run's task was cancelled: by the shutdown grace period (``shutdown``) or a client leaving."""

    def __init__(self, shutdown: bool):
        super().__init__("the server shut down before the run finished; it is stored as interrupted"
                         if shutdown else "the run was cancelled")
        self.shutdown = shutdown
