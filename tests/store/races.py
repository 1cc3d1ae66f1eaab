"""Racing store calls: several threads making one call at once, over several connections."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def race(stores: list[Any], call: Callable[[Any], Any], n: int = 8) -> list[Any]:
    """``n`` threads making ``call(store)`` at once, alternating between the stores; what each got."""
    results: list[Any] = []
    barrier = threading.Barrier(n)

    def one(store: Any) -> None:
        barrier.wait()
        results.append(call(store))

    threads = [threading.Thread(target=one, args=(stores[i % len(stores)],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
