"""`halguru dev` under a demanding user: terminals from 40x12 to 250x70 and resized while open, huge pastes,
unicode from anywhere, rapid keys."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_dev_app import type_and_send, wait_for
from textual import events
from textual.widgets import TextArea

from halguru.models.scripted import ScriptedModel
from halguru.store import open_store
from halguru.tui.app import DevApp
from halguru.tui.widgets import ChatPane, KeyBar, MessageBox, TraceTree

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


def user_lines(app: DevApp) -> list[str]:
    return [str(w.render()) for w in app.query_one(ChatPane).query(".user")]


async def test_a_pasted_megabyte_is_sent_whole_and_the_chat_stays_quick(calc_agent: Path) -> None:
    """The chat drew a 1 MB message whole, and wrapped it again on every layout: 7 s to send, 4 s a resize."""
    pasted = ("lorem ipsum dolor sit amet " * 40 + "\n") * 950
    app = DevApp(calc_agent, model=ScriptedModel(["Read it.", "ok"]), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.query_one("#prompt", MessageBox)
        prompt.focus()
        app.post_message(events.Paste(pasted))
        await wait_for(pilot, lambda: prompt.value == pasted)
        started = time.monotonic()
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.last_answer == "Read it.")
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert time.monotonic() - started < 2.5
        shown = user_lines(app)[-1]
        assert shown.startswith("you: lorem ipsum") and len(shown) < 5000
        assert f"{len(pasted.strip()):,} characters" in shown  # it says it is cut, and how long the message is
        tree = app.query_one(TraceTree)
        tree.focus()
        tree.move_cursor(tree.root.children[0])  # the model_call: the inspector has the message whole
        await pilot.pause()
        assert pasted.strip() in app.query_one("#inspector", TextArea).text
    assert open_store().get_run(app.stored.id)["input"] == pasted.strip()  # the run got all of it


async def test_the_chat_shows_your_message_as_sent_with_its_control_characters_visible(calc_agent: Path) -> None:
    """A pasted right-to-left override made the chat show 'evil' as 'live' (answers and the trace showed it as
    \\u202e): your message is shown as the model gets it."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "שלום 👩\u200d👧 e\u0301 \u202eevil\u202c")
        await wait_for(pilot, lambda: bool(app.last_answer))
        assert user_lines(app)[-1] == "you: שלום 👩\u200d👧 e\u0301 \\u202eevil\\u202c"


async def test_up_and_down_in_the_message_box_walk_your_earlier_messages(calc_agent: Path) -> None:
    """Sending the same message again after a fix (the debugging loop: edit tools.py, it reloads, ask again)
    meant typing it again: the box had no history, where `halguru chat` has readline's."""
    from halguru.agents.runtime import run_to_result

    await run_to_result(calc_agent, "from an earlier session", model=ScriptedModel(["ok"]))
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.query_one("#prompt", MessageBox)
        await type_and_send(pilot, "add 2 and 3")
        await wait_for(pilot, lambda: app.last_answer == "You said: add 2 and 3")
        await type_and_send(pilot, "two lines\nof text")
        await wait_for(pilot, lambda: app.last_answer == "You said: two lines\nof text")
        await pilot.press(*"draft")
        await pilot.press("up")
        assert prompt.value == "two lines\nof text"
        await pilot.press("up")  # a message brought back by ↑ has the cursor on its first line: the one before
        assert prompt.value == "add 2 and 3"
        await pilot.press("up")
        assert prompt.value == "from an earlier session"  # stored runs of this agent count too
        await pilot.press("up")
        assert prompt.value == "from an earlier session"  # the oldest stays
        await pilot.press("down", "down")
        assert prompt.value == "two lines\nof text"
        await pilot.press("down")
        assert prompt.value == "draft"  # what was being typed comes back
        await pilot.press("up", "enter")
        await wait_for(pilot, lambda: app.last_answer == "You said: two lines\nof text")


async def test_the_answer_the_inspector_and_the_run_id_can_be_copied_from_the_keyboard(calc_agent: Path) -> None:
    """Copying needed a mouse selection (and only what was on screen): no key copied an answer or a node."""
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is **5**."])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "add 2 and 3")
        await wait_for(pilot, lambda: app.last_answer == "It is **5**.")

        async def palette(command: str) -> None:
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*command)
            await pilot.pause(0.3)
            await pilot.press("enter")
            await pilot.pause()

        await palette("copy the answer")
        assert app.clipboard == "It is **5**."  # as Markdown, as the model wrote it
        tree = app.query_one(TraceTree)
        tree.focus()
        tree.move_cursor(tree.root.children[0].children[1])  # the tool call
        await pilot.pause()
        await palette("copy the inspector")
        assert app.clipboard == app.query_one("#inspector", TextArea).text and '"a": 2' in app.clipboard
        await palette("copy the run id")
        assert app.clipboard == app.stored.id


async def test_a_short_terminal_keeps_room_for_the_trace(calc_agent: Path) -> None:
    """At 40x12 the key bar took 6 of the 12 lines and the trace had one: on a short terminal the bar keeps
    to a fifth of the height, showing the keys that do something now, help first (F1 lists them all)."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(40, 12)) as pilot:
        await type_and_send(pilot, "hi")
        await wait_for(pilot, lambda: bool(app.last_answer))
        bar = app.query_one(KeyBar)
        assert bar.size.height <= 2
        assert app.query_one(TraceTree).scrollable_content_region.height >= 3
        shown = str(bar.render())
        assert shown.startswith("F1 help") and "F4 edit" not in shown  # nothing to edit: left out first
    async with DevApp(calc_agent, watch=False).run_test(size=(80, 24)) as pilot:
        assert str(pilot.app.query_one(KeyBar).render()).count("\n") + 1 == 3  # all keys, dimmed ones too
        assert "F4 edit" in str(pilot.app.query_one(KeyBar).render())


def tree_text(app: DevApp) -> str:
    out: list[str] = []

    def walk(node) -> None:
        out.append(str(node.label))
        for child in node.children:
            walk(child)

    walk(app.query_one(TraceTree).root)
    return "\n".join(out)


SLOW = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, {"text": "slow " * 40, "token_delay": 0.02}]


async def test_a_stored_run_opened_while_one_streams_waits_for_it(calc_agent: Path) -> None:
    """Opening a stored run from the sidebar while a run streamed drew the live run's result and end inside the
    stored run's tree (under its model call), and the status line then named the live run."""
    from halguru.agents.runtime import run_to_result

    await run_to_result(calc_agent, "an older question", model=ScriptedModel(["older answer"]))
    app = DevApp(calc_agent, model=ScriptedModel(SLOW), watch=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await type_and_send(pilot, "live question")
        await wait_for(pilot, lambda: "tool_result" in tree_text(app))
        runs = app.query_one("#runs")
        older = next(c for c in runs.root.children if "older" in str(c.label)).children[0]
        runs.focus()
        runs.select_node(older)
        await pilot.pause()
        assert any("when it has ended" in n.message for n in app._notifications)
        await wait_for(pilot, lambda: not app.run_worker_.is_running)
        shown = tree_text(app)
        assert "live question" in shown and "older" not in shown
        runs.select_node(older)  # once it has ended, the stored run opens, alone
        await pilot.pause()
        shown = tree_text(app)
        assert "older answer" in shown and "slow" not in shown and app.stored.events[0].input == "an older question"


async def test_replay_or_fork_during_a_live_run_waits_for_it(calc_agent: Path) -> None:
    """F7 while a run streamed replayed the unfinished run into the same tree: both runs' events interleaved,
    and the replay failed ('still running')."""
    app = DevApp(calc_agent, model=ScriptedModel(SLOW), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "live question")
        await wait_for(pilot, lambda: "tool_result" in tree_text(app))
        await pilot.press("f7", "f8")
        await pilot.pause()
        assert sum("when it has ended" in n.message for n in app._notifications) == 2
        await wait_for(pilot, lambda: not app.run_worker_.is_running)
        assert "error" not in tree_text(app) and tree_text(app).count("\nrun_finished") == 1  # one run, ended
        await pilot.press("f7")  # now it replays
        await wait_for(pilot, lambda: any("identical answer" in n.message for n in app._notifications))


async def test_a_new_conversation_waits_for_the_run_in_progress(calc_agent: Path) -> None:
    """Ctrl+N while a run was paused cleared the chat, and the run's answer then landed in the new conversation's
    chat, under no question of its own."""
    app = DevApp(calc_agent, model=ScriptedModel([SLOW[0], "Done.", "fresh"]), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        await type_and_send(pilot, "add 2 and 3")
        await wait_for(pilot, lambda: app.pause is not None)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert any("F5 continues it" in n.message for n in app._notifications)
        assert user_lines(app) == ["you: add 2 and 3"]
        await pilot.press("f3", "f5")
        await wait_for(pilot, lambda: app.last_answer == "Done.")
        await pilot.press("ctrl+n")  # once it has ended
        await pilot.pause()
        assert user_lines(app) == [] and app.conversation_id is None


async def test_ctrl_c_pressed_again_and_again_says_how_to_quit_once(calc_agent: Path) -> None:
    """Each Ctrl+C stacked another identical toast: ten presses, ten toasts over the trace."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(10):  # nothing runs: Ctrl+C has nothing to stop (Ctrl+Q quits)
            await pilot.press("ctrl+c")
        await pilot.pause()
        assert sum("Ctrl+Q" in n.message for n in app._notifications) == 1 and app.is_running


async def test_a_failing_tools_traceback_is_in_the_inspector(write_agent) -> None:
    """The run records where a tool failed (its traceback from the tool's own code on) and `halguru logs show`
    prints it, but the debugger's inspector showed the error's message alone: no file, no line."""
    tools = 'from halguru.tools import tool\n\n\n@tool\ndef divide(a: int, b: int) -> float:\n' \
            '    """Divide a by b."""\n    return a / b\n'
    agent = write_agent("name: failing\nmodel: scripted\ntools: [divide]\n", tools, name="failing")
    model = ScriptedModel([{"tool_calls": [{"name": "divide", "arguments": {"a": 1, "b": 0}}]}, "It failed."])
    app = DevApp(agent, model=model, watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await type_and_send(pilot, "divide 1 by 0")
        await wait_for(pilot, lambda: app.last_answer == "It failed.")
        tree = app.query_one(TraceTree)
        tree.focus()
        for node in (tree.root.children[0].children[1].children[0], tree.root.children[0].children[2]):
            tree.move_cursor(node)  # the red tool_result, then the error under the call
            await pilot.pause()
            shown = app.query_one("#inspector", TextArea).text
            assert "tools.py\", line 7, in divide" in shown and "ZeroDivisionError: division by zero" in shown


async def test_ctrl_b_takes_the_focus_to_the_runs_and_back(calc_agent: Path) -> None:
    """Hiding the sidebar with the focus in it left the focus on its hidden agent filter: what was typed next
    went nowhere. Showing it left the focus where it was, a few Tabs away."""
    from halguru.agents.runtime import run_to_result

    await run_to_result(calc_agent, "a stored question", model=ScriptedModel(["ok"]))
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert app.focused is app.query_one("#runs")
        await pilot.press("down", "down", "enter")  # keyboard only: the first conversation's run opens
        await pilot.pause()
        assert app.stored is not None and app.stored.events[0].input == "a stored question"
        assert app.focused is app.query_one(TraceTree)  # the opened run's trace
        await pilot.press("ctrl+b", "ctrl+b")  # hidden, shown again: the focus is on the runs
        await pilot.pause()
        assert app.focused is app.query_one("#runs")
        await pilot.press("ctrl+b")
        await pilot.pause()
        assert app.focused is app.query_one("#prompt", MessageBox)
        await pilot.press(*"hello")
        assert app.query_one("#prompt", MessageBox).value == "hello"


async def test_the_sidebar_shows_runs_made_elsewhere_when_opened(calc_agent: Path) -> None:
    """Two debuggers (or `halguru run` in another terminal) on one HALGURU_HOME: runs the other made never showed
    in the sidebar until this one ran something itself."""
    from halguru.agents.runtime import run_to_result

    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await run_to_result(calc_agent, "asked in another terminal", model=ScriptedModel(["ok"]))
        await pilot.press("ctrl+b")
        await pilot.pause()
        runs = app.query_one("#runs")
        assert any("asked in another" in str(n.label) for n in runs.root.children)


async def test_a_long_conversation_keeps_the_chat_quick(calc_agent: Path) -> None:
    """Every answer is a tree of Markdown widgets, all kept: at 150 turns (1,800 widgets) each turn took seconds
    to lay out. The chat keeps its last entries and says where the rest is."""
    from halguru.tui.widgets import CHAT_KEEP

    turns = CHAT_KEEP // 2 + 5
    app = DevApp(calc_agent, model=ScriptedModel([f"answer {i}:\n\n- a\n- b\n" for i in range(turns)]), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        for i in range(turns):
            await type_and_send(pilot, f"question {i}")
            await wait_for(pilot, lambda i=i: app.last_answer.startswith(f"answer {i}:")
                           and not app.run_worker_.is_running)
        chat = app.query_one(ChatPane)
        assert len(chat.children) == CHAT_KEEP + 1
        earlier = str(chat.children[0].render())
        assert earlier.startswith("… 10 earlier entries")
        assert f"halguru logs conversation {app.conversation_id}" in earlier
        assert user_lines(app)[-1] == f"you: question {turns - 1}"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not chat.children


async def test_f5_resumes_an_open_interrupted_run_from_its_checkpoint() -> None:
    """An interrupted workflow run opened in the debugger could be replayed (it cannot: nothing was recorded past
    the cut) but not resumed: F5 said "nothing is paused", and `halguru runs resume` was the only way."""
    from test_dev_polish import WORKFLOW_SCRIPT, interrupted_workflow_run

    from halguru.agents.events import Resumed

    cut = await interrupted_workflow_run()
    app = DevApp(None, run_id=cut["id"], model=ScriptedModel([WORKFLOW_SCRIPT[1]]), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        assert app.available("continue")  # F5 is not dimmed in the key bar: there is something to continue
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.last_answer == WORKFLOW_SCRIPT[1])
        assert any(isinstance(e, Resumed) and e.from_run_id == cut["id"] for e in app.stored.events)
        assert app.stored.id != cut["id"] and "resumed" in tree_text(app)
        await pilot.press("f5")  # the continuation finished: nothing to continue now
        await pilot.pause()
        assert any("nothing is paused" in n.message for n in app._notifications)
    assert open_store().get_checkpoint(cut["id"])["resumed_by"] == app.stored.id


async def test_a_reload_error_is_readable_in_the_status_line_at_80_columns(calc_agent: Path) -> None:
    """The status line was one line: at 80 columns "[reload failed]" came after the model and settings and its
    error was cut to a few words, once the toast had gone."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        (calc_agent / "agent.yaml").write_text("name: calc\nmodel: scripted\ntools: [add, subtract]\n")
        await app.reload()
        await pilot.pause()
        status = app.query_one("#status")
        assert app.reload_error is not None and "subtract" in app.reload_error
        assert status.size.height >= 2
        shown = " ".join(line.text for line in status.render_lines(status.region.reset_offset))
        assert "[reload failed]" in shown and "subtract" in shown


async def test_the_palette_goes_to_the_next_error_in_the_trace(write_agent) -> None:
    """A long trace with a failure in it had to be walked node by node to find the red one."""
    tools = 'from halguru.tools import tool\n\n\n@tool\ndef divide(a: int, b: int) -> float:\n' \
            '    """Divide a by b."""\n    return a / b\n'
    agent = write_agent("name: failing\nmodel: scripted\ntools: [divide]\n", tools, name="failing")
    calls = [{"tool_calls": [{"name": "divide", "arguments": {"a": 6, "b": b}}]} for b in (3, 2, 0, 1, 0)]
    app = DevApp(agent, model=ScriptedModel([*calls, "Done."]), watch=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await type_and_send(pilot, "divide")
        await wait_for(pilot, lambda: app.last_answer == "Done.")
        tree = app.query_one(TraceTree)
        seen = []
        for _ in range(3):
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"next error")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await pilot.pause()
            seen.append(tree.cursor_node.data)
        assert [type(e).__name__ for e in seen] == ["ToolResult", "Error", "ToolResult"]
        assert seen[0].is_error and seen[2].is_error and seen[2].seq > seen[1].seq  # the second failure
        assert "ZeroDivisionError" in app.query_one("#inspector", TextArea).text


async def test_a_40x10_terminal_gives_its_lines_to_the_trace_not_to_borders(calc_agent: Path) -> None:
    """At 40x10 the trace's borders and scrollbar left it one line (the run, nothing under it) and the
    inspector one; on a short terminal the panes have no borders, and get them back when it grows."""
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(40, 10)) as pilot:
        await type_and_send(pilot, "add 2 and 3")
        await wait_for(pilot, lambda: app.last_answer == "It is 5.")
        await pilot.press("ctrl+l")
        await pilot.pause()
        tree, inspector = app.query_one(TraceTree), app.query_one("#inspector", TextArea)
        assert tree.scrollable_content_region.height >= 3
        assert inspector.scrollable_content_region.height >= 2
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert tree.styles.border_top[0] == "round" and inspector.styles.border_top[0] == "round"
