"""A bounded, fair admission queue per model.

llama.cpp runs one generation at a time per loaded model; without a bound a
burst of requests would wait forever. Each model admits ``concurrency`` runs;
up to ``queue_size`` more wait, served round-robin across clients so one client
with many requests cannot starve the others, and one client may hold at most
``client_share`` of the waiting places, so it cannot fill the queue either. When
the queue (or the client's share) is full the caller gets :class:`QueueFull` (the
API answers 503 with Retry-After).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable


class QueueFull(Exception):
    def __init__(self, model: str, retry_after: int, share: int | None = None, waiting: str = "runs"):
        from halguru_server.ops import model_label  # a file path's folders are not the caller's business

        super().__init__(f"model {model_label(model)} is busy: " + (
            "its queue is full" if share is None else f"you have {share} {waiting} waiting for it, the most one "
            "client may queue") + f"; retry in {retry_after} s")
        self.model = model
        self.retry_after = retry_after


class _ModelQueue:
    def __init__(self, concurrency: int):
        self.concurrency = concurrency
        self.active = 0
        self.waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()  # client -> waiters

    @property
    def depth(self) -> int:
        return sum(len(q) for q in self.waiting.values())

    def wake(self) -> None:
        while self.active < self.concurrency and self.waiting:
            client, waiters = next(iter(self.waiting.items()))
            future = waiters.popleft()
            del self.waiting[client]
            if waiters:  # this client goes to the back of the line
                self.waiting[client] = waiters
            if not future.done():
                self.active += 1
                future.set_result(None)


class Reservation:
    """A place in a model's queue; ``async with`` waits for the turn, leaving (or ``release``) frees it."""

    def __init__(self, gate: ModelGate, model: str, queue: _ModelQueue, client: str,
                 future: asyncio.Future[None] | None):
        self.gate, self.model, self.queue, self.client, self.future = gate, model, queue, client, future
        self.released = False

    async def __aenter__(self) -> Reservation:
        if self.future is not None:
            try:
                await self.future
            except BaseException:
                self.release()
                raise
            self.gate.on_depth(self.model, self.queue.depth)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Idempotent: frees the running slot, or leaves the waiting line."""
        if self.released:
            return
        self.released = True
        queue = self.queue
        if self.future is None or (self.future.done() and not self.future.cancelled()):
            queue.active -= 1
        else:
            self.future.cancel()
            waiters = queue.waiting.get(self.client)
            if waiters is not None and self.future in waiters:
                waiters.remove(self.future)
                if not waiters:
                    del queue.waiting[self.client]
        queue.wake()
        self.gate.on_depth(self.model, queue.depth)


class ModelGate:
    def __init__(self, queue_size: int, on_depth: Callable[[str, int], None] | None = None,
                 client_share: float = 1.0):
        self.queue_size = queue_size
        self.per_client = max(1, int(queue_size * client_share))  # waiting places one client may hold
        self.queues: dict[str, _ModelQueue] = {}
        self.on_depth = on_depth or (lambda model, depth: None)

    def depth(self, model: str) -> int:
        queue = self.queues.get(model)
        return queue.depth if queue else 0

    def reserve(self, model: str, client: str, concurrency: int, waiting: str = "runs") -> Reservation:
        """Take a place now, or raise QueueFull (``waiting``: what its message calls the waiting places' holders);
        ``async with`` the result to wait for the turn."""
        queue = self.queues.setdefault(model, _ModelQueue(concurrency))
        if queue.active < queue.concurrency and not queue.waiting:
            queue.active += 1
            return Reservation(self, model, queue, client, None)
        if queue.depth >= self.queue_size:
            raise QueueFull(model, retry_after=max(1, queue.depth))
        if len(queue.waiting.get(client, ())) >= self.per_client:
            raise QueueFull(model, retry_after=max(1, queue.depth), share=self.per_client, waiting=waiting)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.waiting.setdefault(client, deque()).append(future)
        self.on_depth(model, queue.depth)
        return Reservation(self, model, queue, client, future)
