"""Store reads for health checks and scrapes, bounded in time: with the database down each read would wait for
its connect timeout (5 s, and the pool's wait), so `/status` took 22 s and `/metrics` 10 s, Prometheus' whole
scrape timeout, just when a monitor needs them. A read that does not answer in time counts as the store down."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

T = TypeVar("T")
PROBE_TIMEOUT_S = 2.0
# Few threads: a read stuck on a dead database keeps its thread until its own timeout; later probes queue
# behind it and time out here, instead of piling up threads.
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="halguru-probe")


class ProbeTimeout(Exception):
    """The store did not answer within the probe's time."""


def within(seconds: float, read: Callable[[], T]) -> T:
    """``read()``'s result, or ProbeTimeout after ``seconds`` (the read goes on in its thread, unawaited)."""
    future = _POOL.submit(read)
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        future.cancel()
        raise ProbeTimeout(f"no answer within {seconds:g} s") from None
