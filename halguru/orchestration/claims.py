"""Claims on a run's continuation (a resume, an approval's decision), taken on a thread and let go for sure.

The store's claim is a lease its process renews until the continuation starts (``store/sql_resume.py``); one
taken for a request that was cancelled meanwhile would be renewed for the life of the process (a server's), so
the run could never be continued. ``claimed`` takes it off the event loop and, if the caller is cancelled before
the claim's thread is done, lets it go when it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def claimed(claim: Callable[[], T], release: Callable[[T], None]) -> T:
    """``claim()`` on a thread; a claim whose caller was cancelled meanwhile is ``release``d once made."""
    future = asyncio.ensure_future(asyncio.to_thread(claim))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        def let_go(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:  # a store write: off the event loop too
                asyncio.get_running_loop().run_in_executor(None, release, done.result())

        future.add_done_callback(let_go)
        raise
