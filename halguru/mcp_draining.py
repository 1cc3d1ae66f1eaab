"""How ``halguru mcp serve --http`` stops: as ``halguru serve`` does.

Left to the HTTP server the SDK runs, a stop (SIGTERM, Ctrl-C) waited for the asks in flight as long as their
clients did, and a second Ctrl-C stored the runs still going as ``cancelled`` ("by the user", whom nothing had
asked). Here the asks in flight get ``grace`` seconds to finish (their answers reach their callers); then, or at a
second signal, their runs are interrupted (stored ``interrupted``, each caller told); a third signal quits without
waiting for connections. The server's own signal handlers are wrapped, not replaced, when its lifespan starts
(halguru does not import the server itself: DESIGN.md).
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halguru.mcp_server import InFlight


class Draining:
    """ASGI middleware around the MCP app that stops the asks in flight as a shutdown does (see the module)."""

    def __init__(self, app: Any, in_flight: InFlight, grace: float):
        self.app, self.in_flight, self.grace = app, in_flight, grace
        self.signals = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the server's signal handlers are in place by now
            self._watch(asyncio.get_running_loop())
        await self.app(scope, receive, send)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if callable(handler):
                signal.signal(sig, functools.partial(self._signalled, loop, handler))

    def _signalled(self, loop: asyncio.AbstractEventLoop, passed_on: Callable[[int, FrameType | None], Any],
                   sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        calls = self.in_flight.count
        if self.signals == 1:  # the server stops taking connections and waits for the open ones
            print(f"halguru mcp: stopping; {calls} call{'' if calls == 1 else 's'} in flight, given {self.grace:g}s "
                  "to finish (Ctrl-C again interrupts now)" if calls else "halguru mcp: stopping", file=sys.stderr,
                  flush=True)
            passed_on(sig, frame)
            loop.call_soon_threadsafe(loop.call_later, self.grace, self.in_flight.interrupt)
        elif self.signals == 2:  # (a signal handler: the loop is told, not touched)
            if calls:
                print("halguru mcp: stopping now; the calls in flight are interrupted (Ctrl-C again quits without "
                      "waiting for connections)", file=sys.stderr, flush=True)
            loop.call_soon_threadsafe(self.in_flight.interrupt)
        else:
            passed_on(sig, frame)
