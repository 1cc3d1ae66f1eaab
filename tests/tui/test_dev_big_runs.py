"""`halguru dev` with big stored runs: a 20,000-event trace opens at once, stays quick to move through, resize
and fold, and its last event is a key press away. Times are the process's CPU time (the machines are shared)."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import TextArea

from halguru.agents.events import Event, ModelCall, ModelResult, RunFinished, RunStarted, ToolCall, ToolResult
from halguru.store import open_store
from halguru.tui.app import DevApp
from halguru.tui.lazytree import LazyNode
from halguru.tui.widgets import TraceTree

OPEN_CPU_S = 2.0  # selecting it in the sidebar to its last event on screen (Textual's eager Tree: 3 s and more)
MOVE_CPU_S = 1.2  # two resizes and a branch folded and unfolded (each rebuilt and measured every label: 2.4 s)


def store_run(size: int, agent: str = "calc") -> str:
    """A stored run of ``size`` events, as a long tool loop leaves it; the last answer is "all done"."""
    run_id, conv = f"run_big{size}", f"conv_big{size}"
    events: list[Event] = [RunStarted(agent=agent, model="scripted", input="a long loop", conversation_id=conv)]
    step = 0
    while len(events) < size - 1:
        step += 1
        events += [ModelCall(model="scripted", messages=[{"role": "user", "content": "a long loop"}], step=step),
                   ModelResult(text="", tool_calls=[{"id": f"c{step}", "name": "add", "arguments": {}}], step=step),
                   ToolCall(call_id=f"c{step}", name="add", arguments={"a": step, "b": 1}, step=step),
                   ToolResult(call_id=f"c{step}", name="add", content=f"{step + 1} " + "x" * (step % 300), step=step)]
    events = [*events[: size - 1], RunFinished(status="ok", output="all done")]
    for seq, e in enumerate(events):
        e.run_id, e.seq = run_id, seq
    store = open_store()
    store.start_run(run_id, conv, agent, "scripted", "a long loop")
    store.finish_run(run_id, conv, events[-1].model_dump(), events, [])
    return run_id


async def test_a_20000_event_run_opens_at_once_and_its_last_event_shows_its_details(calc_agent: Path) -> None:
    """Textual's Tree drew and measured all 20,000 labels before the first frame: about 12 s to open the run
    from the sidebar. Only the lines on screen are drawn now."""
    run_id = store_run(20_000)
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+b")
        await pilot.pause()
        started = time.process_time()
        await pilot.press("down", "down", "enter")  # the sidebar's first conversation: its run
        await pilot.pause()
        tree = app.query_one(TraceTree)
        assert app.stored is not None and app.stored.id == run_id and app.focused is tree
        await pilot.press("end")
        await pilot.pause()
        opened = time.process_time() - started
        last = tree.cursor_node
        assert last is not None and isinstance(last.data, RunFinished)
        assert "finished ok" in str(last.label)
        assert "all done" in app.query_one("#inspector", TextArea).text  # its details
        assert opened < OPEN_CPU_S, f"{opened:.2f} s of CPU to open the run and reach its end"
        nodes = [tree.root]
        for node in nodes:
            nodes.extend(node.children)
        assert len(nodes) == 20_000
        assert sum(isinstance(n, LazyNode) and n.drawn for n in nodes) < 200  # what was on screen


async def test_a_20000_event_run_resizes_and_folds_quickly(calc_agent: Path) -> None:
    """A resize, a focus change, or a branch folded rebuilt every line and measured every label again: 0.6 s
    each at 20,000 events, so dragging the terminal's corner froze the debugger."""
    stored = store_run(20_000)
    app = DevApp(calc_agent, run_id=stored, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        tree = app.query_one(TraceTree)
        await pilot.press("down")  # the first model call
        started = time.process_time()
        await pilot.resize_terminal(40, 10)
        await pilot.pause()
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        await pilot.press("space")
        await pilot.pause()
        assert tree.cursor_node is not None and not tree.cursor_node.is_expanded
        await pilot.press("space")
        await pilot.pause()
        moved = time.process_time() - started
        assert tree.cursor_node.is_expanded and tree.last_line == 20_000 - 1  # every event has its line again
        assert moved < MOVE_CPU_S, f"{moved:.2f} s of CPU"


async def test_slash_finds_a_text_in_a_20000_event_trace_and_n_finds_it_again(calc_agent: Path) -> None:
    """The trace had no search: the one tool result that said something was somewhere in 20,000 lines."""
    app = DevApp(calc_agent, run_id=store_run(20_000), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        tree, inspector = app.query_one(TraceTree), app.query_one("#inspector", TextArea)
        await pilot.press("slash", "4", "3", "2", "2", "space", "X", "enter")  # any case
        await pilot.pause()
        found = tree.cursor_node
        assert found is not None and isinstance(found.data, ToolResult) and found.data.content.startswith("4322 x")
        assert "4322 xxx" in inspector.text
        assert tree.scroll_offset.y <= tree.cursor_line < tree.scroll_offset.y + tree.size.height  # on screen
        await pilot.press("home", "n")  # from the top, n finds it again
        await pilot.pause()
        assert tree.cursor_node is found
        await pilot.press("slash", "ctrl+u", *"nowhere", "enter")
        await pilot.pause()
        assert tree.cursor_node is found
        assert any("no event of this trace holds 'nowhere'" in n.message for n in app._notifications)


def _lines(tree: TraceTree) -> list[tuple[object, bool, int, int]]:
    return [(line.node, line.last, len(line.path), line.node._line) for line in tree._tree_lines]


async def test_folding_a_branch_of_a_100000_event_run_costs_what_the_branch_holds(calc_agent: Path) -> None:
    """Each fold or unfold rebuilt all 100,000 lines and measured every label: 1.2 s of CPU a key press. Now
    only the branch's lines come or go, and the tree is the one a full rebuild makes."""
    app = DevApp(calc_agent, run_id=store_run(100_000), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        tree = app.query_one(TraceTree)
        await pilot.press("down", "down", "down")  # the first model call's tool call
        started = time.process_time()
        for _ in range(4):  # fold and unfold it, twice
            await pilot.press("space")
            await pilot.pause()
        folded = time.process_time() - started
        assert tree.cursor_node is not None and tree.cursor_node.is_expanded
        assert folded < 1.0, f"{folded:.2f} s of CPU for four folds"
        model_call = tree.root.children[0]
        model_call.collapse()
        tree.root.children[-2].collapse()  # the last model call
        model_call.expand()
        tree.move_cursor(tree.root.children[5])
        tree.root.children[5].collapse()
        shown = _lines(tree)
        assert tree.cursor_node is tree.root.children[5] and tree.cursor_line == tree.root.children[5]._line
        tree._clear_line_cache()
        assert shown == _lines(tree)  # as Textual's full rebuild draws it
        assert tree.virtual_size.height == len(shown)
        tree.root.collapse()
        await pilot.pause()
        assert tree.last_line == 0 and tree.cursor_node is tree.root  # its branch hid the cursor: it goes up


async def test_n_walks_the_places_a_phrase_was_said_not_every_model_call_that_repeats_it(calc_agent: Path) -> None:
    """Each model call sends the whole conversation again, so a phrase a tool returned once matched its result
    and every later model call: n stepped through dozens of copies. A model call is searched for the messages it
    adds, so n walks the distinct places."""
    run_id, conv = "run_repeats", "conv_repeats"
    history: list[dict[str, object]] = [{"role": "system", "content": "You add numbers."},
                                         {"role": "user", "content": "add them all"}]
    events: list[Event] = [RunStarted(agent="calc", model="scripted", input="add them all", conversation_id=conv)]
    for step in range(1, 31):
        said = "a purple elephant" if step == 3 else f"{step}"
        events += [ModelCall(model="scripted", messages=list(history), step=step),
                   ModelResult(text="", tool_calls=[{"id": f"c{step}", "name": "add", "arguments": {}}], step=step),
                   ToolCall(call_id=f"c{step}", name="add", arguments={"a": step, "b": 1}, step=step),
                   ToolResult(call_id=f"c{step}", name="add", content=said, step=step)]
        history += [{"role": "assistant", "content": "", "tool_calls": [{"id": f"c{step}", "name": "add"}]},
                    {"role": "tool", "name": "add", "content": said}]
    history.append({"role": "user", "content": "and the elephant? (edited at a breakpoint)"})
    events += [ModelCall(model="scripted", messages=history, step=31), RunFinished(status="ok", output="done")]
    for seq, e in enumerate(events):
        e.run_id, e.seq = run_id, seq
    store = open_store()
    store.start_run(run_id, conv, "calc", "scripted", "add them all")
    store.finish_run(run_id, conv, events[-1].model_dump(), events, [])
    app = DevApp(calc_agent, run_id=run_id, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        tree = app.query_one(TraceTree)
        await pilot.press("slash", *"elephant", "enter")
        await pilot.pause()
        found = []
        for _ in range(4):
            assert tree.cursor_node is not None
            found.append(tree.cursor_node.data)
            await pilot.press("n")
            await pilot.pause()
        assert [type(e).__name__ for e in found] == ["ToolResult", "ModelCall", "ToolResult", "ModelCall"]
        assert found[0].step == 3 and found[1].step == 31  # the result that said it, the call that asked of it
        await pilot.press("slash", "ctrl+u", *"add them all", "enter")
        await pilot.pause()
        assert tree.cursor_node is tree.root  # the run's input
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(tree.cursor_node.data, ModelCall) and tree.cursor_node.data.step == 1
        await pilot.press("n")
        await pilot.pause()
        assert tree.cursor_node is tree.root  # and no later model call that repeats it
