"""Reads that cost far more than most requests (analytics over a window, searching every conversation's
messages, a conversation's export with every run's events) take one of ``SLOTS`` places per server process before
they run. A route without ``async`` runs on one of the threads every such route shares (40): fifty clients
asking for analytics at once held them all, and a one-row read of another user waited 2.2 s for a thread
instead of 13 ms. Here the fifty wait their turn on the event loop, holding no thread, and the rest is served
as before; one that waits ``WAIT_S`` is answered 503 with Retry-After."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends

from halguru_server.errors import ApiError

SLOTS = 4
WAIT_S = 30.0
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def slot() -> AsyncIterator[None]:
    """Held while the route runs (and its answer is made); declare it after the caller's dependency, so a caller
    refused (401, 403) never waits for a place."""
    slots = _slots.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(SLOTS))
    try:
        await asyncio.wait_for(slots.acquire(), WAIT_S)
    except TimeoutError:
        raise ApiError(503, "the server is busy with other searches, analytics and exports; try again shortly",
                       "busy", headers={"Retry-After": "10"}) from None
    try:
        yield
    finally:
        slots.release()


Costly = Annotated[None, Depends(slot)]
