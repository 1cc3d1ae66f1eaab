"""Synchronous tools share reused daemon threads: calls in a row reuse one, concurrent calls run in parallel."""

from __future__ import annotations

import asyncio
import threading
import time

from halguru.tools.decorator import tool
from halguru.tools.registry import execute_tool


@tool
def which_thread(pause: float = 0.0) -> str:
    """Say which thread ran this call."""
    time.sleep(pause)
    return str(threading.get_ident())


MEETING = threading.Barrier(3, timeout=10)


@tool
def meet() -> str:
    """Wait until three calls run at once; say which thread ran this one."""
    MEETING.wait()
    return str(threading.get_ident())


def test_calls_in_a_row_reuse_a_thread_and_concurrent_calls_run_in_parallel() -> None:
    async def main() -> tuple[list[str], list[str]]:
        before = {str(t.ident) for t in threading.enumerate()}
        in_a_row = [await execute_tool(which_thread, {}) for _ in range(20)]
        assert len(set(in_a_row) - before) <= 1  # at most one thread started for twenty calls: the rest reused
        # three at once: each waits until all three run (a barrier, not a time bound a slow machine can overrun)
        together = await asyncio.gather(*(execute_tool(meet, {}) for _ in range(3)))
        return in_a_row, list(together)

    in_a_row, together = asyncio.run(main())
    assert all(t.isdigit() for t in together), together  # none timed out waiting for the others
    assert len(set(together)) == 3  # three at once, on three threads
    assert str(threading.get_ident()) not in in_a_row  # never on the event loop's thread
