"""halguru_runs_total labels a run cut by the shutdown grace period as the store does: interrupted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from halguru.agents.events import RunStarted, Token


async def _cut_run(interrupted: bool) -> float:
    from halguru_server.metrics import Metrics
    from halguru_server.service import metered

    state: Any = SimpleNamespace(metrics=Metrics(), lifecycle=SimpleNamespace(interrupted=interrupted))

    async def stream() -> AsyncIterator[Any]:
        yield RunStarted(agent="echo", model="scripted", input="hi", conversation_id="c")
        yield Token(text="par")
        await asyncio.sleep(10)  # cut here

    events = metered(state, SimpleNamespace(name="echo"), contextlib.AsyncExitStack(), stream())
    assert (await anext(events)).type == "run_started" and (await anext(events)).type == "token"
    await events.aclose()
    label = "interrupted" if interrupted else "cancelled"
    return state.metrics.registry.get_sample_value("halguru_runs_total", {"agent": "echo", "status": label})


def test_a_run_cut_by_shutdown_counts_as_interrupted_and_a_client_leaving_as_cancelled() -> None:
    assert asyncio.run(_cut_run(True)) == 1.0
    assert asyncio.run(_cut_run(False)) == 1.0
