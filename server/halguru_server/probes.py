"""Store reads for health checks and scrapes, bounded in time: with the database down each read would wait for
its connect timeout (5 s, and the pool's wait), so `/status` took 22 s and `/metrics` 10 s, Prometheus' whole
scrape timeout, just when a monitor needs them. A read that does not answer in time counts as the store down.

Within ``one_look()`` (a request of /readyz, /status or /metrics) the first read that times out counts for the rest
of it: later reads fail at once, so the request answers within one probe's time, not one per read.

``OutageLog``: what reads the store again and again (the readiness check, the deployments poller) says an outage
once as it starts and once as it ends, as the job workers do, not a traceback per try."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from halguru.errors import StoreUnavailable

T = TypeVar("T")
log = logging.getLogger("halguru.server")
PROBE_TIMEOUT_S = 2.0
# Few threads: a read stuck on a dead database keeps its thread until its own timeout; later probes queue
# behind it and time out here, instead of piling up threads.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="halguru-probe")
_silent: ContextVar[list[bool] | None] = ContextVar("halguru_probe_silent", default=None)  # in one_look()


class ProbeTimeout(Exception):
    """The store did not answer within the probe's time."""


@contextmanager
def one_look() -> Iterator[None]:
    """Reads made inside (on this thread) give up at once after one of them timed out."""
    token = _silent.set([False])
    try:
        yield
    finally:
        _silent.reset(token)


def within(seconds: float, read: Callable[[], T]) -> T:
    """``read()``'s result, or ProbeTimeout after ``seconds`` (the read goes on in its thread, unawaited)."""
    silent = _silent.get()
    if silent is not None and silent[0]:
        raise ProbeTimeout("no answer to an earlier read")
    future = _POOL.submit(read)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        future.cancel()
        if silent is not None:
            silent[0] = True
        raise ProbeTimeout(f"no answer within {seconds:g} s") from None


class OutageLog:
    """Logs ``WHAT: store unavailable; retrying`` when the store stops answering and ``WHAT: store reachable
    again`` when it answers, however many tries meet the outage between; any other failure is a bug, logged
    with its traceback each time."""

    def __init__(self, what: str):
        self.what = what
        self.down = False
        self._lock = threading.Lock()  # requests' threads report at once

    def failed(self, exc: BaseException) -> None:
        if not isinstance(exc, StoreUnavailable | ProbeTimeout):
            log.error("%s failed", self.what, exc_info=exc)
            return
        with self._lock:
            first, self.down = not self.down, True
        if first:
            log.warning("%s: store unavailable; retrying", self.what, extra={"fields": {"error": str(exc)}})

    def answered(self) -> None:
        with self._lock:
            was, self.down = self.down, False
        if was:
            log.info("%s: store reachable again", self.what)
