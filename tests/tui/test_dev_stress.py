"""`halguru dev` under a demanding user: terminals from 40x12 to 250x70 and resized while open, huge pastes,
unicode from anywhere, rapid keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dev_app import type_and_send, wait_for

from halguru.models.scripted import ScriptedModel
from halguru.tui.app import DevApp
from halguru.tui.widgets import MessageBox

SIZES = [(40, 12), (60, 20), (80, 24), (120, 40), (250, 70)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_size_chats_with_the_runs_sidebar_shown(calc_agent: Path, size: tuple[int, int]) -> None:
    """Ctrl+B on a 40-column terminal left the message box 0 cells wide, and Textual's placeholder wrap
    crashed the whole debugger (ValueError: range() arg 3 must not be zero)."""
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=size) as pilot:
        if not app.query_one("#sidebar").display:
            await pilot.press("ctrl+b")
        await pilot.pause()
        assert app.query_one("#sidebar").display
        prompt = app.query_one("#prompt", MessageBox)
        assert prompt.content_region.width >= 8  # room to see what is typed
        assert app.query_one("#trace").region.width >= 8
        await type_and_send(pilot, "add 2 and 3")
        await wait_for(pilot, lambda: app.last_answer == "It is 5.")


async def test_narrowing_the_terminal_with_the_sidebar_open_keeps_the_debugger_running(calc_agent: Path) -> None:
    """The sidebar opens by itself at 120 columns and more; narrowing the terminal to 40 then crashed the app."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        assert app.query_one("#sidebar").display
        for size in [(120, 40), (80, 24), (60, 20), (50, 16), (40, 12), (250, 70)]:
            await pilot.resize_terminal(*size)
            await pilot.pause()
            assert app.query_one("#prompt", MessageBox).content_region.width >= 8, size
        await type_and_send(pilot, "still here")
        await wait_for(pilot, lambda: app.last_answer == "You said: still here")
