"""SVG snapshots of the main screens (update with `pytest tests/tui --snapshot-update`)."""

from __future__ import annotations

from pathlib import Path

from halguru.tui.app import DevApp


def test_main_screen_80x24_dark(calc_agent: Path, snap_compare) -> None:
    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(80, 24))


def test_main_screen_wide_light_with_sidebar(calc_agent: Path, snap_compare) -> None:
    async def light(pilot) -> None:
        await pilot.press("ctrl+t")

    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(130, 32), run_before=light)


def test_help_screen(calc_agent: Path, snap_compare) -> None:
    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(100, 30), press=["f1"])


def test_tool_breakpoint_status(calc_agent: Path, snap_compare) -> None:
    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(80, 24), press=["f3", "f2"])
