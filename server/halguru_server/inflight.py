"""Requests one principal has in flight at once, across processes: at most ``max_in_flight``, 429 beyond.

The model gate bounds model runs and ``costly`` a few heavy reads; nothing bounded the rest. A route without
``async`` runs on one of the 40 threads every such route shares, so one key keeping 50 requests in flight on a
list route held them all, and another user's one-row read waited for a thread. Here each principal (a person
with all their keys and browsers; an app's key; an anonymous visitor's address, as ``Principal.client``) holds
at most ``max_in_flight`` places; a request past them is answered 429 ``too_many_in_flight`` with Retry-After
before its body is read or its route runs, and the others are served as before.

Invariants: a place is taken when the route's guard admits the caller (``guards.admit``; once per request, as
the guard runs twice) and given back when the request's answer is over (``RequestMiddleware``), whatever
happened; counted on the event loop only, so no lock. The other processes' counts (replicas on one database,
``--workers N``) come from the store once a second (``keep_sharing``, ``halguru.store.sql_inflight``), so a
request held longer than that counts on every process. Not counted: public routes (health, metrics, sign-in
pages, webhooks), the routes that stop abuse (revoking a key or a session, disabling a user: a person whose
leaked key floods the server shares its count), and an SSE stream once it starts (``service.EventStream``):
each has its own cap (a followed run's ``max_followers``, a live run's place in the model gate), and an
answer streamed for minutes must not take a place from the caller's next short requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections import Counter
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from halguru_server.errors import ApiError

if TYPE_CHECKING:
    from halguru.store.base import Store

TOO_MANY = "too_many_in_flight"
RETRY_AFTER = 1  # seconds: most requests take milliseconds
_KEY = "in_flight"  # where a request keeps what gives its place back (its scope's ``state``)
SHARE_EVERY = 1.0  # seconds between a process's shares of its counts (``keep_sharing``)
SHARE_TTL = 5.0  # seconds a shared count stands without renewal: a killed process's places come back after it
log = logging.getLogger("halguru.server")


class InFlight:
    def __init__(self, limit: int):
        self.limit = limit  # 0: no cap
        self.counts: Counter[str] = Counter()
        self.others: dict[str, int] = {}  # the other processes' counts, as the store had them at the last share
        self.process = f"{os.getpid()}-{secrets.token_hex(4)}"  # this process's rows in the store

    def enter(self, state: MutableMapping[str, Any], client: str) -> None:
        """Take a place for this request of ``client`` (once: a second call is nothing), or raise 429."""
        if self.limit == 0 or _KEY in state:
            return
        if self.counts[client] + self.others.get(client, 0) >= self.limit:
            raise ApiError(429, f"too many requests in flight: {self.limit} at once per client "
                           "(HALGURU_SERVE_MAX_IN_FLIGHT); wait for an answer before sending more", TOO_MANY,
                           headers={"Retry-After": str(RETRY_AFTER)})
        self.counts[client] += 1
        state[_KEY] = (self, client)

    def _leave(self, client: str) -> None:
        self.counts[client] -= 1
        if self.counts[client] <= 0:
            del self.counts[client]


    async def keep_sharing(self, store: Store) -> None:
        """Share this process's counts with the others through the store every ``SHARE_EVERY`` s (replicas,
        ``--workers N``), for as long as the server runs; a store that fails is tried again at the next share,
        the last counts read standing meanwhile (an outage must not take the cap away, nor add a log per second)."""
        failed = False
        while self.limit:
            try:
                self.others = await asyncio.to_thread(store.share_in_flight, self.process, dict(self.counts),
                                                      SHARE_TTL)
                if failed:
                    log.info("in-flight counts shared again")
                failed = False
            except Exception as exc:
                if not failed:
                    log.warning("cannot share in-flight counts: %s", exc)
                failed = True
            await asyncio.sleep(SHARE_EVERY)


def leave(state: MutableMapping[str, Any]) -> None:
    """Give back the place this request holds, if any (idempotent)."""
    held = state.pop(_KEY, None)
    if held is not None:
        held[0]._leave(held[1])
