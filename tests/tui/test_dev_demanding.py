"""`halguru dev` under a developer who stops runs, steps past the end of one and edits the project meanwhile."""

from __future__ import annotations

from pathlib import Path

from test_dev_app import type_and_send, wait_for

from halguru.tui.app import DevApp


async def test_a_step_past_the_end_of_a_run_does_not_pause_the_next_one(calc_agent: Path) -> None:
    """F6 at a run's last pause point left the debugger stepping: the next message paused before its model call
    with every breakpoint off (the status line said "break: off")."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f2")
        await type_and_send(pilot, "one")
        await wait_for(pilot, lambda: app.pause is not None)
        await pilot.press("f2", "f6")  # breakpoint off, then step: the answer is the run's last point
        await wait_for(pilot, lambda: app.last_answer == "You said: one" and not app.run_worker_.is_running)
        await type_and_send(pilot, "two")
        await wait_for(pilot, lambda: app.last_answer == "You said: two" or app.pause is not None)
        assert app.pause is None and app.last_answer == "You said: two"
