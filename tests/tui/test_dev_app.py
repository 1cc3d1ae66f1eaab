"""`halguru dev` driven by Textual's pilot, as a user would: keys in, screen and store out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from textual.widgets import TextArea
from textual.worker import WorkerCancelled

from halguru.agents.replay import load_run
from halguru.agents.runtime import run_to_result
from halguru.models.scripted import ScriptedModel
from halguru.store import open_store
from halguru.tui.app import DevApp
from halguru.tui.screens import EditScreen
from halguru.tui.widgets import ChatPane, MessageBox, TraceTree


def labels(tree: TraceTree) -> list[str]:
    out: list[str] = []

    def walk(node) -> None:
        out.append(str(node.label))
        for child in node.children:
            walk(child)

    walk(tree.root)
    return out


async def wait_for(pilot, condition, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached in time")


async def type_and_send(pilot, text: str) -> None:
    prompt = pilot.app.query_one("#prompt", MessageBox)
    prompt.focus()
    prompt.value = text
    await pilot.press("enter")


async def test_send_a_message_streams_the_answer_and_fills_the_tree(calc_agent: Path, tmp_path: Path) -> None:
    app = DevApp(calc_agent, watch=False, export_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "hello there")
        await wait_for(pilot, lambda: any("finished ok" in s for s in labels(app.query_one(TraceTree))))
        chat = app.query_one(ChatPane)
        assert "You said: hello there" in app.last_answer
        assert any("hello there" in str(w.render()) for w in chat.query(".user"))
        tree_text = "\n".join(labels(app.query_one(TraceTree)))
        assert "model_call" in tree_text and "model_result" in tree_text and "tok" in tree_text
        # the inspector shows the messages as sent when the model call node is highlighted
        tree = app.query_one(TraceTree)
        tree.focus()
        tree.move_cursor(tree.root.children[0])
        await pilot.pause()
        inspector = app.query_one("#inspector", TextArea).text
        assert "messages as sent" in inspector and "You add numbers." in inspector
        # export: JSON with every event, and a conversation test case
        await pilot.press("ctrl+s")
        await pilot.pause()
        run_id = app.stored.id
        exported = json.loads((tmp_path / f"{run_id}.json").read_text())
        assert exported["run"]["output"] == "You said: hello there"
        assert "equals: 'You said: hello there'" in (tmp_path / f"{run_id}.test.yaml").read_text()


async def test_a_pasted_block_is_sent_whole_as_one_message(calc_agent: Path) -> None:
    """The one-line input kept a paste's first line: 299 of 300 pasted lines were dropped without a word."""
    from textual import events

    pasted = "\n".join(f"pasted line {i} " + "x" * 50 for i in range(300))
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        prompt = app.query_one("#prompt", MessageBox)
        prompt.focus()
        app.post_message(events.Paste(pasted))  # as the terminal driver passes on a bracketed paste
        await pilot.pause()
        assert prompt.value == pasted and not app.last_answer  # the line breaks did not send it
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.last_answer.startswith("You said: pasted line 0"))
        assert prompt.value == ""
    sent = open_store().get_run(app.stored.id)["input"]
    assert sent == pasted


async def test_tool_breakpoint_pauses_the_runtime_and_edited_arguments_are_used(calc_agent: Path) -> None:
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "Done."])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        await type_and_send(pilot, "add 2 and 3")
        await wait_for(pilot, lambda: app.pause is not None)
        assert app.pause.kind == "tool_call"
        assert "paused" in str(app.query_one("#pausebar").render())
        # the run is really suspended: nothing after the model result happens while paused
        await asyncio.sleep(0.2)
        assert not any("tool_result" in s for s in labels(app.query_one(TraceTree)))
        await pilot.press("f4")
        await pilot.pause()
        editor = app.screen.query_one("#editor", TextArea)
        editor.text = '{"a": 40, "b": 2}'
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("f5")
        # then the breakpoint stops again after the result (tool breakpoints cover the result too)
        await wait_for(pilot, lambda: app.pause is not None and app.pause.kind == "tool_result")
        assert app.pause.value[1] == "42"
        await pilot.press("f5")
        await wait_for(pilot, lambda: any("finished ok" in s for s in labels(app.query_one(TraceTree))))
    events = open_store().get_events(app.stored.id)
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    assert call["arguments"] == {"a": 40, "b": 2} and result["content"] == "42"
    # the model saw the edited call and its result in the conversation
    assert model.requests[1].messages[-1].content == "42"
    assert model.requests[1].messages[-2].tool_calls[0].arguments == {"a": 40, "b": 2}


async def test_model_breakpoint_step_and_edit_next_message(calc_agent: Path) -> None:
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f2")
        await type_and_send(pilot, "first")
        await wait_for(pilot, lambda: app.pause is not None)
        assert app.pause.kind == "model_call"
        await pilot.press("f4")
        await pilot.pause()
        app.screen.query_one("#editor", TextArea).text = "edited"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await pilot.press("f6")
        await wait_for(pilot, lambda: any("finished ok" in s for s in labels(app.query_one(TraceTree))))
    assert app.last_answer == "You said: edited"


async def test_open_stored_run_and_replay_gives_the_identical_answer(calc_agent: Path) -> None:
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."])
    result = await run_to_result(calc_agent, "add 2 and 3", model=model)
    app = DevApp(None, run_id=result.run_id[:12], watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        tree_text = "\n".join(labels(app.query_one(TraceTree)))
        assert "tool_call add" in tree_text and "tool_result add" in tree_text and "finished ok" in tree_text
        assert app.query_one("#prompt", MessageBox).disabled  # no project: view and replay only
        await pilot.press("f7")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen")
        assert "identical answer" in str(app.screen.title_text)
        assert app.screen.query_one("#diff", TextArea).text == "no differences"
    assert app.last_answer == "It is 5." == result.output


async def test_fork_from_an_event_runs_live_and_compares(calc_agent: Path) -> None:
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "It is 5."])
    result = await run_to_result(calc_agent, "add 2 and 3", model=model)
    stored = load_run(open_store(), result.run_id)
    second_call = [e for e in stored.events if e.type == "model_call"][1]
    app = DevApp(calc_agent, run_id=result.run_id, watch=False)  # live model: scripted echo
    async with app.run_test(size=(100, 30)) as pilot:
        tree = app.query_one(TraceTree)
        node = next(n for n in _nodes(tree.root) if n.data is not None and n.data.seq == second_call.seq)
        tree.move_cursor(node)
        await pilot.press("f8")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen")
        diff = app.screen.query_one("#diff", TextArea).text
    assert "-It is 5." in diff and "+You said: add 2 and 3" in diff
    assert app.last_answer == "You said: add 2 and 3"


def _nodes(node):
    yield node
    for child in node.children:
        yield from _nodes(child)


async def test_errors_show_in_tree_and_missing_run_is_a_clear_error(calc_agent: Path) -> None:
    from halguru.errors import HalguruError

    with pytest.raises(HalguruError, match="no run 'nope'"):
        DevApp(calc_agent, run_id="nope", watch=False)
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": "x"}}]}, {"error": "model died"}])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "break it")
        await wait_for(pilot, lambda: any("finished failed" in s for s in labels(app.query_one(TraceTree))))
        text = "\n".join(labels(app.query_one(TraceTree)))
        assert "error tool" in text and "error model: model died" in text
        assert app.is_running


async def test_huge_tool_output_is_clipped_in_tree_and_whole_in_inspector(write_agent) -> None:
    folder = write_agent("name: big\nmodel: scripted\ntools: [dump]\n",
                         "from halguru.tools import tool\n\n@tool\ndef dump() -> str:\n"
                         "    'Big.'\n    return 'x' * 7000\n", name="big")  # under the 8,000-character cut
    model = ScriptedModel([{"tool_calls": [{"name": "dump", "arguments": {}}]}, "ok"])
    app = DevApp(folder, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "dump")
        await wait_for(pilot, lambda: any("finished ok" in s for s in labels(app.query_one(TraceTree))))
        tree = app.query_one(TraceTree)
        node = next(n for n in _nodes(tree.root) if n.data is not None and n.data.type == "tool_result")
        assert len(str(node.label)) < 120
        tree.focus()
        tree.move_cursor(node)
        await pilot.pause()
        assert "x" * 7000 in app.query_one("#inspector", TextArea).text


async def test_hot_reload_keeps_the_conversation_and_survives_a_bad_file(calc_agent: Path) -> None:
    app = DevApp(calc_agent)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "one")
        await wait_for(pilot, lambda: app.last_answer == "You said: one")
        conversation = app.conversation_id
        await asyncio.sleep(0.3)  # let the watcher start
        (calc_agent / "agent.yaml").write_text(
            "name: calc\nmodel: scripted\ninstructions: You now multiply.\ntools: [add]\n")
        await wait_for(pilot, lambda: app.agent.instructions == "You now multiply.")
        (calc_agent / "tools.py").write_text("def broken(:\n")
        await wait_for(pilot, lambda: app.reload_error is not None)
        assert "syntax error" in app.reload_error
        assert "reload failed" in str(app.query_one("#status").render())
        await type_and_send(pilot, "two")  # the previous version keeps working
        await wait_for(pilot, lambda: app.last_answer == "You said: two")
        assert app.conversation_id == conversation
        sent = app.stored.model_calls()[0].messages
        assert sent[0]["content"] == "You now multiply." and any(m["content"] == "one" for m in sent)


async def test_settings_are_applied_and_recorded(calc_agent: Path) -> None:
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.apply_settings({"model": "scripted", "temperature": 0.7, "max_tokens": 64})
        await type_and_send(pilot, "hi")
        await wait_for(pilot, lambda: app.last_answer == "You said: hi")
    started, call = app.stored.events[0], app.stored.model_calls()[0]
    assert started.metadata["dev"]["sampling"] == {"temperature": 0.7, "max_tokens": 64}
    assert call.settings["temperature"] == 0.7 and call.settings["max_tokens"] == 64


async def test_quit_during_generation_stores_the_partial_run(calc_agent: Path) -> None:
    model = ScriptedModel([{"text": " ".join(["word"] * 200), "token_delay": 0.02}])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "talk")
        await wait_for(pilot, lambda: app.query_one(TraceTree).streamed > 5)
        await pilot.press("ctrl+q")
        await pilot.pause()
    runs = open_store().list_runs()
    assert runs[0]["status"] == "cancelled" and runs[0]["output"].startswith("word word")


async def test_a_run_cut_while_its_answer_is_drawn_is_stored_at_once(calc_agent: Path, monkeypatch) -> None:
    """The cancel lands in the app's own drawing, outside the run: the run is still closed and stored before
    the worker ends, not whenever the garbage collector gets to it."""
    from halguru.tui.answer import AnswerView

    drawing = asyncio.Event()

    async def stuck_write(self, text: str) -> None:
        drawing.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(AnswerView, "append", stuck_write)
    model = ScriptedModel([{"text": " ".join(["word"] * 200), "token_delay": 0.01}])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "talk")
        await wait_for(pilot, drawing.is_set)
        worker = app.run_worker_
        worker.cancel()
        with pytest.raises(WorkerCancelled):
            await worker.wait()
        run = open_store().list_runs()[0]
        assert run["status"] == "cancelled" and run["output"].startswith("word")


async def test_help_and_theme(calc_agent: Path) -> None:
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.theme == "textual-light"


async def test_a_workflow_shows_its_steps_in_the_tree(tmp_path: Path) -> None:
    (tmp_path / "echo").mkdir()
    (tmp_path / "echo" / "agent.yaml").write_text("name: echo\nmodel: scripted\n")
    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "agent.yaml").write_text("name: flow\nworkflow:\n  steps:\n    - {id: double, condition: '21 * 2'}\n"
                                     "    - {id: say, agent: ../echo, input: 'n={{ steps.double.output }}'}\n")
    app = DevApp(flow, watch=False, export_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "go")
        await wait_for(pilot, lambda: any("finished ok" in s for s in labels(app.query_one(TraceTree))))
        assert app.last_answer == "You said: n=42"
        tree_text = "\n".join(labels(app.query_one(TraceTree)))
        assert "step double · condition" in tree_text and "step ok double" in tree_text
        assert "step say · agent echo" in tree_text and "checkpoint step say ok" in tree_text


async def test_approve_and_reject_a_paused_tool_call_from_the_debugger(write_agent, tmp_path: Path) -> None:
    sent = tmp_path / "sent.log"
    (tmp_path / "script.yaml").write_text(
        "- tool_calls: [{name: send_email, arguments: {to: ann@example.com}}]\n- Sent it.\n"
        "- tool_calls: [{name: send_email, arguments: {to: zed@example.com}}]\n- I did not send it.\n")
    folder = write_agent(f"name: mailer\nmodel: scripted:{tmp_path / 'script.yaml'}\ntools: [send_email]\n"
                         "approvals: [send_email]\n",
                         f"from halguru import tool\n\n@tool\ndef send_email(to: str) -> str:\n"
                         f"    'Send an email.'\n    open({str(sent)!r}, 'a').write(to + '\\n')\n    return 'sent'\n")
    app = DevApp(folder, watch=False, export_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "mail ann")
        await wait_for(pilot, lambda: app.awaiting is not None)
        assert "send_email waits for approval" in str(app.query_one("#pausebar").render())
        assert not sent.exists()
        await pilot.press("f9")  # the arguments open for editing; Ctrl+S approves with them
        await wait_for(pilot, lambda: isinstance(app.screen, EditScreen))
        # Arguments the tool refuses keep the dialog open with why (they failed after closing it, and the
        # run, still waiting, could no longer be approved from the debugger).
        app.screen.query_one("#editor", TextArea).text = '{"to": 5}'
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, EditScreen)
        assert "invalid arguments for send_email" in str(app.screen.query_one("#error").render())
        app.screen.query_one("#editor", TextArea).text = '{"to": "bob@example.com"}'
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.last_answer == "Sent it.")
        assert sent.read_text() == "bob@example.com\n" and app.awaiting is None

        await type_and_send(pilot, "mail zed")
        await wait_for(pilot, lambda: app.awaiting is not None)
        await pilot.press("f10")
        await wait_for(pilot, lambda: isinstance(app.screen, EditScreen))
        app.screen.query_one("#editor", TextArea).text = "zed is a competitor"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.last_answer == "I did not send it.")
        assert sent.read_text() == "bob@example.com\n"
        rejected = next(e for e in app.last_events if e.type == "approval_rejected")
        assert rejected.reason == "zed is a competitor"
        # Both continuations stayed in the debugger's conversation.
        assert len(open_store().get_messages(app.conversation_id)) == 8


async def test_a_specialists_calls_nest_under_the_ask_that_started_them(tmp_path: Path) -> None:
    (tmp_path / "tech").mkdir()
    (tmp_path / "tech" / "agent.yaml").write_text("name: tech\ndescription: Technical problems.\nmodel: scripted\n")
    desk = tmp_path / "desk"
    desk.mkdir()
    (desk / "agent.yaml").write_text("name: desk\nmodel: scripted\nteam:\n  specialists: [../tech]\n")
    model = ScriptedModel([{"tool_calls": [{"name": "ask_tech", "arguments": {"request": "line?"}}]},
                           "Line is fine.", "All good."])
    app = DevApp(desk, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "help")
        await wait_for(pilot, lambda: app.last_answer == "All good.")
        tree = app.query_one(TraceTree)
        ask = next(n for n in _nodes(tree.root) if n.data is not None and n.data.type == "tool_call")
        branch = ask.children[0]  # the specialist's own branch, named
        assert str(branch.label) == "agent tech"
        inner = [n.data for n in _nodes(branch) if n is not branch and n.data is not None]
        assert [e.type for e in inner][:2] == ["model_call", "model_result"]
        assert all(e.run_id != tree.root.data.run_id for e in inner[:2])  # the specialist's own run
        assert inner[1].text == "Line is fine."


async def test_export_that_cannot_write_says_why_and_keeps_an_existing_test_file(calc_agent: Path,
                                                                                  tmp_path: Path) -> None:
    """Ctrl+S into a missing or read-only folder crashed the debugger with a traceback; a second Ctrl+S replaced
    RUN_ID.test.yaml (a test you may have edited) without a word."""
    out = tmp_path / "out"
    app = DevApp(calc_agent, watch=False, export_dir=out)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "hello there")
        await wait_for(pilot, lambda: app.stored is not None)
        await pilot.press("ctrl+s")  # the folder does not exist
        await pilot.pause()
        [missing] = [n for n in app._notifications]
        assert missing.severity == "error" and f"cannot export to {out}: No such file" in missing.message
        assert not out.exists()
        out.mkdir()
        blocker = out / f"{app.stored.id}.json"
        blocker.mkdir()  # a write that fails (as in a read-only folder, which root could still write)
        await pilot.press("ctrl+s")
        await pilot.pause()
        failed = list(app._notifications)[-1]
        assert failed.severity == "error" and f"cannot export to {out}: Is a directory" in failed.message
        blocker.rmdir()
        await pilot.press("ctrl+s")
        await pilot.pause()
        test_file = out / f"{app.stored.id}.test.yaml"
        assert test_file.exists() and list(app._notifications)[-1].severity == "information"
        test_file.write_text("# my edits\n")
        await pilot.press("ctrl+s")
        await pilot.pause()
        kept = list(app._notifications)[-1]
        assert kept.severity == "warning" and "exists already: kept" in kept.message
        assert test_file.read_text() == "# my edits\n"
        assert app.is_running
