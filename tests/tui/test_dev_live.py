"""`halguru dev` while a run streams into it: long tool loops and long answers cost the same per event from the first
to the last, and what is on screen is what a fresh drawing shows. Times are the process's CPU time (the machines
are shared), against the bare runtime's for the same run measured in the same test."""

from __future__ import annotations

import re
import time
from pathlib import Path

from test_dev_app import type_and_send, wait_for
from textual.widgets import TextArea

from halguru.agents.events import ModelCall, ModelResult, RunStarted, ToolCall, ToolResult
from halguru.agents.runtime import run
from halguru.models.scripted import ScriptedModel
from halguru.tui.app import DevApp
from halguru.tui.widgets import TraceTree

TOOLS = '''
from halguru.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b
'''
LOOP = "name: loop\nmodel: scripted\ninstructions: You add numbers.\ntools: [add]\nlimits: {max_steps: 100}\n"


def tool_loop(steps: int, calls: int) -> list[dict[str, object]]:
    """A script of ``steps`` model calls of ``calls`` tool calls each, then an answer."""
    return [*({"tool_calls": [{"name": "add", "arguments": {"a": s, "b": c}} for c in range(calls)]}
              for s in range(steps)), "all added"]


def shown(tree: TraceTree) -> tuple[list[tuple[object, bool, int]], list[str]]:
    """The tree's lines (node, last of its parent, depth) and the text of those on screen."""
    lines = [(line.node, line.last, len(line.path)) for line in tree._tree_lines]
    assert all(line.node._line == number for number, line in enumerate(tree._tree_lines))
    return lines, [tree.render_line(y).text for y in range(tree.size.height)]


def redrawn(tree: TraceTree) -> tuple[list[tuple[object, bool, int]], list[str]]:
    """The same after Textual rebuilds every line and draws them again."""
    tree._clear_line_cache()
    tree._updates += 1
    return shown(tree)


async def test_a_run_of_990_tool_calls_costs_the_same_per_event_to_the_end(write_agent) -> None:
    """Each event a live run added rebuilt every line of the trace, measured every label and drew every line on
    screen again: a 990-tool-call run (2,182 events) took 16-19 s of CPU in the debugger against 0.8 s for the
    runtime alone, and more per event the longer it ran. Only the new line is placed and drawn now."""
    agent = write_agent(LOOP, TOOLS, name="loop")
    started = time.process_time()
    async for _ in run(agent, "add", model=ScriptedModel(tool_loop(99, 10))):
        pass
    bare = time.process_time() - started
    app = DevApp(agent, model=ScriptedModel(tool_loop(99, 10)), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        started = time.process_time()
        await type_and_send(pilot, "add")
        await wait_for(pilot, lambda: app.last_answer == "all added", timeout=120)
        await pilot.pause()
        live = time.process_time() - started
        tree = app.query_one(TraceTree)
        assert len(tree._tree_lines) == len(app.last_events) == 1 + 99 * 22 + 3  # every event has its line
        assert live < 10 * bare, f"{live:.2f} s of CPU in the debugger, {bare:.2f} s for the runtime alone"
        tree.scroll_end(animate=False)
        await pilot.pause()
        assert shown(tree) == redrawn(tree)


async def test_the_node_you_inspect_stays_selected_while_the_run_adds_lines_above_it(calc_agent: Path) -> None:
    """A tool's result lands under its call, above the calls made after it: the cursor (and the inspector) must
    stay on the node you were reading, and the lines stay as a fresh drawing has them."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        tree = app.query_one(TraceTree)
        events = [RunStarted(agent="calc", model="m", input="add", conversation_id="c"),
                  ModelCall(model="m", messages=[{"role": "user", "content": "add"}], step=1),
                  ModelResult(text="", tool_calls=[{"id": f"c{i}", "name": "add", "arguments": {}} for i in range(3)],
                              step=1),
                  *(ToolCall(call_id=f"c{i}", name="add", arguments={"a": i, "b": 10}, step=1) for i in range(3))]
        for e in events:
            e.run_id = "run_live"
            tree.add(e)
        await pilot.pause()
        tree.focus()
        third = tree.root.children[0].children[-1]
        tree.move_cursor(third)
        await pilot.pause()
        assert '"a": 2' in app.query_one("#inspector", TextArea).text
        for i in (0, 1):
            tree.add(ToolResult(run_id="run_live", call_id=f"c{i}", name="add", content=f"{i + 10}", step=1))
            await pilot.pause()
            assert tree.cursor_node is third and '"a": 2' in app.query_one("#inspector", TextArea).text
        tree.add(ModelCall(run_id="run_live", model="m", messages=[], step=2))
        await pilot.pause()
        assert tree.cursor_node is third
        assert shown(tree) == redrawn(tree)
        assert [re.match(r"[│├└▼ ]*[a-z_]+", text).group() for text in shown(tree)[1][:9]] == [  # type: ignore[union-attr]
            "▼ run", "├ ▼ model_call", "│ ├ model_result", "│ ├ ▼ tool_call", "│ │ └ tool_result", "│ ├ ▼ tool_call",
            "│ │ └ tool_result", "│ └ ▼ tool_call", "└ ▼ model_call"]
