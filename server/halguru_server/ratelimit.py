"""The public web chat's rate limit: a sliding one-minute window per client, behind a small interface.

With ``--workers N`` each worker is its own process, so an in-memory window would let a client send N times
the limit. :class:`StoreLimiter` keeps the hits in the store, shared by every worker (and replica); it is
used when the store offers ``rate_hit`` and :class:`MemoryLimiter` otherwise (one process only).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any, Protocol

from halguru_server.errors import ApiError

WINDOW = 60.0
MAX_CLIENTS = 100_000  # the memory limiter forgets the least recently seen clients past this


class Limiter(Protocol):
    per_minute: int

    def retry_after(self, client: str) -> float | None:
        """Record one hit for ``client``: None if allowed, else the seconds until the next one is."""
        ...


class MemoryLimiter:
    """One process's hits, bounded in clients."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.hits: OrderedDict[str, deque[float]] = OrderedDict()
        self.lock = threading.Lock()

    def retry_after(self, client: str) -> float | None:
        now = time.monotonic()
        with self.lock:
            hits = self.hits.pop(client, None) or deque()
            self.hits[client] = hits
            while len(self.hits) > MAX_CLIENTS:
                self.hits.popitem(last=False)
            while hits and hits[0] <= now - WINDOW:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return hits[0] + WINDOW - now
            hits.append(now)
            return None


class StoreLimiter:
    """Hits counted in the store (``store.rate_hit(bucket, limit, window_s) -> retry_after | None``)."""

    def __init__(self, per_minute: int, store: Any):
        self.per_minute, self.store = per_minute, store

    def retry_after(self, client: str) -> float | None:
        return self.store.rate_hit(f"chat:{client}", self.per_minute, WINDOW)


def make_limiter(per_minute: int, store: Any) -> Limiter:
    return StoreLimiter(per_minute, store) if hasattr(store, "rate_hit") else MemoryLimiter(per_minute)


def check(limiter: Limiter, client: str) -> None:
    """429 with Retry-After once ``client`` has made its requests for this minute (messages, new sessions and
    conversations, attachments: each writes to the store; resumed answers: each polls it)."""
    wait = limiter.retry_after(client)
    if wait is not None:
        retry = int(wait) + 1
        raise ApiError(429, f"too many requests: {limiter.per_minute} a minute per client (messages, new chats, "
                       f"attachments, resumed answers); retry in {retry} s",
                       headers={"Retry-After": str(retry)})
