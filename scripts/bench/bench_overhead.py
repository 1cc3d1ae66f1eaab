"""Runtime overhead per step, in µs (goal: at most 100 µs), with the scripted model.

The scripted model costs next to nothing, so what a full ``run()`` adds on top of
calling the model's ``stream()`` and the tool by hand is the runtime itself:
events, message building, tool validation, the trace store. A step is one model
call; every step but the last calls a trivial tool. Per-run costs (start and
finish events, store rows) are spread over the run's steps, as in real use.
A plain sync tool runs on a worker thread (so a slow one cannot stall the event loop); the
inline and async cases show how much of its cost is that thread hop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import _common
from _common import Result, median, spread

from halguru.agents.loader import Agent
from halguru.agents.runtime import run
from halguru.agents.spec import AgentSpec, Limits
from halguru.models.base import Message, ModelRequest, ToolCallChunk, ToolSpec
from halguru.models.scripted import ScriptedModel
from halguru.tools import Tool, tool

GOAL_US = 100.0
STEPS = 10  # model calls per run: 9 tool rounds and a final answer


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(name="add", inline=True)
def add_inline(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(name="add")
async def add_async(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def script() -> list[dict[str, Any]]:
    calls = [{"tool_calls": [{"name": "add", "arguments": {"a": i, "b": 1}}]} for i in range(STEPS - 1)]
    return [*calls, {"text": "The sum is 10."}]


async def runtime_once(agent: Agent, record: bool) -> float:
    model = ScriptedModel(script(), name="bench")
    started = time.perf_counter()
    async for event in run(agent, "Add things up.", model=model, record=record):
        if event.type == "run_finished":
            assert event.status == "ok" and event.steps == STEPS, event  # type: ignore[union-attr]
    return time.perf_counter() - started


async def baseline_once(fn: Tool) -> float:
    """The same model chunks and tool calls, with no runtime: the floor a run cannot go below."""
    model = ScriptedModel(script(), name="bench")
    request = ModelRequest(
        messages=[Message(role="user", content="Add things up.")],
        tools=[ToolSpec(name=fn.name, description=fn.description, parameters=fn.parameters)])
    started = time.perf_counter()
    for _ in range(STEPS):
        async for chunk in model.stream(request):
            if isinstance(chunk, ToolCallChunk):
                result = fn.function(**chunk.call.arguments)
                if fn.is_async:
                    result = await result
    return time.perf_counter() - started


async def sample(once: Callable[[], Awaitable[float]], batches: int, per_batch: int) -> list[float]:
    """Median seconds per run within each batch: one slow run (GC, a neighbour's burst) cannot skew it."""
    for _ in range(per_batch):  # warm-up: pydantic schemas, SQLite pages, code paths
        await once()
    return [median([await once() for _ in range(per_batch)]) for _ in range(batches)]


async def measure_async(quick: bool) -> list[Result]:
    batches, per_batch = (3, 20) if quick else (7, 50)
    cases = [("sync tool on a worker thread, record=False", add, False),
             ("inline sync tool, record=False", add_inline, False),
             ("async tool, record=False", add_async, False),
             ("async tool, recorded to SQLite", add_async, True)]
    results = []
    for label, fn, record in cases:
        agent = Agent.from_spec(AgentSpec(name="bench", model="scripted", limits=Limits(max_steps=STEPS)),
                                tools=[fn])
        runtime_s, baseline_s = [], []
        for _ in range(batches):  # alternate, so both see the same machine load
            runtime_s += await sample(lambda a=agent, r=record: runtime_once(a, r), 1, per_batch)
            baseline_s += await sample(lambda f=fn: baseline_once(f), 1, per_batch)
        per_step = [(r - b) / STEPS * 1e6 for r, b in zip(runtime_s, baseline_s, strict=True)]
        results.append(Result(
            bench="overhead", metric=f"runtime µs per step ({label})", value=median(per_step), unit="µs",
            goal=GOAL_US, higher_is_better=False, ratio=median(runtime_s) / median(baseline_s),
            baseline="of stream()+tool by hand",
            detail=(f"run() {median(runtime_s) * 1e3:.2f} ms, by hand {median(baseline_s) * 1e3:.2f} ms "
                    f"for {STEPS} steps; per step {spread(per_step, ' µs')}"),
            runs=batches))
    return results


def measure(quick: bool) -> list[Result]:
    return asyncio.run(measure_async(quick))


if __name__ == "__main__":
    _common.main("Runtime overhead (scripted model)", measure, __doc__ or "")
