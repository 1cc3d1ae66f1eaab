"""`halguru dev`: opening big stored runs (1,000, 20,000 and 100,000 events) in a running debugger.

For each size, in one app (120x40): what selecting the run in the sidebar does (``load_run`` and
``open_stored``) until the tree is drawn, then End to the run's last event, with its details in the
inspector. The baseline is the same on a 10-event run, measured in the same run (the pilot's key press and
frames are most of it): the ratio is what the size costs. ``load_run`` alone (reading and parsing the events
from the store, which the debugger cannot skip) and the process's CPU time (steadier than wall time on a
shared machine) are in the absolute figures.

Folding: on the 100,000-event run, the CPU time of folding and unfolding its first model call twice (space,
four times, each to its next frame), against the same on the 10-event run.
"""

from __future__ import annotations

import asyncio
import time

import _common
from _common import Result, median, spread
from bench_tui import big_run, project_folder

SIZES = {1000: 300.0, 20_000: 1000.0, 100_000: 5000.0}  # events -> goal (ms)
BASELINE = 10  # events
FOLD_SIZE, FOLD_GOAL = 100_000, 400.0  # events, CPU ms of four folds


async def _open(project, run_id: str) -> tuple[float, float, float]:
    """(ms to open the run and reach its last event, the CPU ms of it, ms of ``load_run`` alone)."""
    from textual.widgets import TextArea

    from halguru.agents.replay import load_run
    from halguru.tui.app import DevApp
    from halguru.tui.widgets import TraceTree

    app = DevApp(project, watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        load_run(app.store, run_id)
        store_ms = (time.perf_counter() - started) * 1000
        started, cpu = time.perf_counter(), time.process_time()
        app.open_stored(load_run(app.store, run_id))
        await pilot.pause()
        await pilot.press("end")
        tree, inspector = app.query_one(TraceTree), app.query_one("#inspector", TextArea)
        while not (tree.cursor_node is not None and tree.cursor_node.data is not None
                   and tree.cursor_node.data.type == "run_finished" and "run_finished" in inspector.text):
            await pilot.pause()
        open_ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
    return open_ms, cpu_ms, store_ms


async def _fold(project, run_id: str) -> float:
    """CPU ms of folding and unfolding the run's first model call twice, each to its next frame."""
    from halguru.agents.replay import load_run
    from halguru.tui.app import DevApp
    from halguru.tui.widgets import TraceTree

    app = DevApp(project, watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.open_stored(load_run(app.store, run_id))
        await pilot.pause()
        await pilot.press("down")
        await pilot.pause()
        cpu = time.process_time()
        for _ in range(4):
            await pilot.press("space")
            await pilot.pause()
        cpu_ms = (time.process_time() - cpu) * 1000
        assert app.query_one(TraceTree).cursor_node.is_expanded
    return cpu_ms


def _fold_result(project, runs: dict[int, str], repeat: int) -> Result:
    big, small = [], []
    for _ in range(repeat):
        big.append(asyncio.run(_fold(project, runs[FOLD_SIZE])))
        small.append(asyncio.run(_fold(project, runs[BASELINE])))
    return Result(
        bench="tui_open", metric=f"fold and unfold a branch twice in a {FOLD_SIZE:,}-event run (CPU)",
        value=median(big), unit="ms", goal=FOLD_GOAL, higher_is_better=False, ratio=median(big) / median(small),
        baseline=f"of the same on a {BASELINE}-event run",
        detail=f"CPU {spread(big, ' ms')}, {BASELINE}-event run {spread(small, ' ms')}", runs=repeat)


def measure(quick: bool) -> list[Result]:
    project = project_folder()
    runs = {size: big_run(size) for size in [BASELINE, *SIZES]}
    asyncio.run(_open(project, runs[1000]))  # warm imports
    results = []
    for size, goal in SIZES.items():
        repeat = 1 if quick else (3 if size >= 100_000 else 5)
        timings, small = [], []
        for _ in range(repeat):
            timings.append(asyncio.run(_open(project, runs[size])))
            small.append(asyncio.run(_open(project, runs[BASELINE]))[0])
        open_ms, cpu_ms, store_ms = ([t[i] for t in timings] for i in range(3))
        results.append(Result(
            bench="tui_open", metric=f"open a {size:,}-event run and End to its last event", value=median(open_ms),
            unit="ms", goal=goal, higher_is_better=False, ratio=median(open_ms) / median(small),
            baseline=f"of the same on a {BASELINE}-event run",
            detail=f"open {spread(open_ms, ' ms')} (CPU {spread(cpu_ms, ' ms')}; load_run {spread(store_ms, ' ms')}), "
                   f"{BASELINE}-event run {spread(small, ' ms')}", runs=repeat))
    results.append(_fold_result(project, runs, 1 if quick else 3))
    return results


if __name__ == "__main__":
    _common.main("halguru dev: opening big runs", measure, __doc__ or "")
