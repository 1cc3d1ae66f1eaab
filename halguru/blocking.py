"""``asyncio.run`` for coroutines whose result may be large (a run's every event, a test suite's report).

When ``asyncio.run`` ends it puts SIGINT's handler back, and in Python 3.11 ``signal.signal`` looks the old
handler (a partial holding the finished main task) up in an enum, whose miss formats the task, result and all:
``repr`` of a whole RunResult, twice, 0.45 s for 90 tool calls' events. The main task here returns nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end in a new event loop, as ``asyncio.run`` does, and return its result."""
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]
