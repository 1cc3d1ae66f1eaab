"""`halguru dev`: opening a 2,000-event stored run, and streaming at full model speed.

1. Open: from `DevApp(run_id=...)` to a mounted tree holding all 2,000 events, plus 100
   cursor moves through it (navigable), against opening the same app with no run.
2. Streaming: a scripted model streaming 3,000 tokens with no delay, through the app
   (batched tree and Markdown updates), against the bare runtime consuming the same run.
3. A live tool loop: 99 model calls of 10 tool calls each (2,182 events) drawn into the
   trace as they come, in CPU seconds, against the bare runtime's for the same run.
"""

from __future__ import annotations

import asyncio
import time

import _common
from _common import HOME, Result, median, spread

OPEN_GOAL_MS = 1000.0
STREAM_GOAL_X = 3.0
LOOP_GOAL_X = 8.0
TOOLS = 'from halguru.tools import tool\n\n\n@tool\ndef t(i: int) -> int:\n    """Give i back."""\n    return i\n'
EVENTS = 2000


def project_folder():
    folder = HOME / "tui-agent"
    folder.mkdir(exist_ok=True)
    (folder / "agent.yaml").write_text("name: tui\nmodel: scripted\ninstructions: bench\n", encoding="utf-8")
    return folder


def loop_folder():
    folder = HOME / "tui-loop"
    folder.mkdir(exist_ok=True)
    (folder / "agent.yaml").write_text("name: loop\nmodel: scripted\ninstructions: bench\ntools: [t]\n"
                                       "limits: {max_steps: 100}\n", encoding="utf-8")
    (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    return folder


def loop_script() -> list:
    return [*({"tool_calls": [{"name": "t", "arguments": {"i": c}} for c in range(10)]} for _ in range(99)), "done"]


async def _loop_app_cpu(project) -> float:
    from halguru.models.scripted import ScriptedModel
    from halguru.tui.app import DevApp

    app = DevApp(project, model=ScriptedModel(loop_script()), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        started = time.process_time()
        await app.send("go")
        await pilot.pause()
        assert app.last_answer == "done"
        return time.process_time() - started


async def _loop_bare_cpu(project) -> float:
    from halguru.agents.runtime import run
    from halguru.models.scripted import ScriptedModel

    started = time.process_time()
    async for _ in run(project, "go", model=ScriptedModel(loop_script())):
        pass
    return time.process_time() - started


def big_run(size: int = EVENTS) -> str:
    """A stored run of ``size`` events: model calls, results, tool calls and results (bench_tui_open's too)."""
    from halguru.agents.events import ModelCall, ModelResult, RunFinished, RunStarted, ToolCall, ToolResult
    from halguru.store import open_store

    store = open_store()
    run_id, conv = f"run_bench{size}", f"conv_bench{size}"
    store.start_run(run_id, conv, "tui", "scripted", "big")
    events = [RunStarted(agent="tui", model="scripted", input="big", conversation_id=conv)]
    step = 0
    while len(events) < size - 1:
        step += 1
        events += [ModelCall(model="scripted", messages=[{"role": "user", "content": "big"}], step=step),
                   ModelResult(text="", tool_calls=[{"id": f"c{step}", "name": "t", "arguments": {}}], step=step),
                   ToolCall(call_id=f"c{step}", name="t", arguments={"i": step}, step=step),
                   ToolResult(call_id=f"c{step}", name="t", content="x" * 500, step=step)]
    events = events[: size - 1]
    events.append(RunFinished(status="ok", output="done"))
    for i, e in enumerate(events):
        e.run_id, e.seq = run_id, i
    store.finish_run(run_id, conv, events[-1].model_dump(), events, [])
    return run_id


async def _open_ms(project, run_id: str | None) -> float:
    from halguru.tui.app import DevApp
    from halguru.tui.widgets import TraceTree

    started = time.perf_counter()
    app = DevApp(project, run_id=run_id, watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        tree = app.query_one(TraceTree)
        if run_id:
            tree.focus()
            for _ in range(100):
                tree.action_cursor_down()
            await pilot.pause()
            assert tree.cursor_line >= 100
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed


async def _stream_app_ms(project, text: str) -> float:
    from halguru.models.scripted import ScriptedModel
    from halguru.tui.app import DevApp

    app = DevApp(project, model=ScriptedModel([text]), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        started = time.perf_counter()
        await app.send("go")
        elapsed = (time.perf_counter() - started) * 1000
        await pilot.pause()
        assert app.last_answer == text
    return elapsed


async def _stream_bare_ms(project, text: str) -> float:
    from halguru.agents.runtime import run
    from halguru.models.scripted import ScriptedModel

    started = time.perf_counter()
    async for _ in run(project, "go", model=ScriptedModel([text])):
        pass
    return (time.perf_counter() - started) * 1000


def measure(quick: bool) -> list[Result]:
    runs = 3 if quick else 7
    project, run_id = project_folder(), big_run()
    text = " ".join(f"w{i}" for i in range(3000))
    asyncio.run(_open_ms(project, run_id))  # warm imports
    open_ms, empty_ms, app_ms, bare_ms = [], [], [], []
    loop, loop_app, loop_bare = loop_folder(), [], []
    for _ in range(runs):
        loop_app.append(asyncio.run(_loop_app_cpu(loop)))
        loop_bare.append(asyncio.run(_loop_bare_cpu(loop)))
        open_ms.append(asyncio.run(_open_ms(project, run_id)))
        empty_ms.append(asyncio.run(_open_ms(project, None)))
        app_ms.append(asyncio.run(_stream_app_ms(project, text)))
        bare_ms.append(asyncio.run(_stream_bare_ms(project, text)))
    return [
        Result(bench="tui", metric=f"open a {EVENTS}-event run + 100 moves", value=median(open_ms), unit="ms",
               goal=OPEN_GOAL_MS, higher_is_better=False, ratio=median(open_ms) / median(empty_ms),
               baseline="of opening the app with no run",
               detail=f"with run {spread(open_ms, ' ms')}, empty app {spread(empty_ms, ' ms')}", runs=runs),
        Result(bench="tui", metric="stream 3,000 tokens: app / bare runtime", value=median(app_ms) / median(bare_ms),
               unit="x", goal=STREAM_GOAL_X, higher_is_better=False, ratio=median(app_ms) / median(bare_ms),
               baseline="of the bare runtime",
               detail=f"app {spread(app_ms, ' ms')} ({3000 / median(app_ms) * 1000:.0f} tok/s), "
                      f"bare {spread(bare_ms, ' ms')}", runs=runs),
        Result(bench="tui", metric="live run of 990 tool calls: app / bare runtime (CPU)",
               value=median(loop_app) / median(loop_bare), unit="x", goal=LOOP_GOAL_X, higher_is_better=False,
               ratio=median(loop_app) / median(loop_bare), baseline="of the bare runtime's CPU",
               detail=f"app {spread(loop_app, ' s')}, bare {spread(loop_bare, ' s')}", runs=runs),
    ]


if __name__ == "__main__":
    _common.main("halguru dev (TUI)", measure, __doc__ or "")
