"""Durations in a trace leave out the time a run spent suspended at a breakpoint."""

from __future__ import annotations

import asyncio
import time

from halguru.agents.events import ModelResult, ToolResult
from halguru.agents.hooks import BreakpointHooks, Pause
from halguru.agents.loader import Agent
from halguru.agents.runtime import collect_result, run
from halguru.agents.spec import AgentSpec
from halguru.models.scripted import ScriptedModel


def test_time_at_breakpoints_is_not_in_the_durations() -> None:
    agent = Agent.from_spec(AgentSpec(name="calc", model="scripted", tools=["calculator"]))
    model = ScriptedModel([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]}, "42."])

    async def main() -> tuple[float, object]:
        loop = asyncio.get_running_loop()

        def on_pause(pause: Pause) -> None:  # a human takes 0.4 s at each stop
            loop.call_later(0.4, pause.resume)

        started = time.perf_counter()
        result = await collect_result(run(agent, "6*7?", model=model, record=False,
                                          hooks=BreakpointHooks(on_pause, models=True, tools=True)))
        return time.perf_counter() - started, result

    wall, result = asyncio.run(main())
    assert result.ok and result.output == "42."
    stops = 2 + 2  # two model calls; the tool call and its result
    assert wall >= 0.4 * stops
    # Bounds set by the pauses, not by the machine's speed (a loaded one resumes each stop late, and that is the
    # run's own time): with its 0.4 s stop the tool or a model call would take over 400 ms, and with all four
    # the run would take nearly all of the wall time
    [tool] = [e for e in result.events if isinstance(e, ToolResult)]
    assert tool.duration_ms < 400, tool.duration_ms
    assert all(e.duration_ms < 400 for e in result.events if isinstance(e, ModelResult))
    assert result.events[-1].duration_ms < wall * 1000 - 1000, (result.events[-1].duration_ms, wall)
