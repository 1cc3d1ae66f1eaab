"""`halguru dev` under a developer who stops runs, steps past the end of one and edits the project meanwhile."""

from __future__ import annotations

from pathlib import Path

from test_dev_app import labels, type_and_send, wait_for
from textual.containers import Vertical
from textual.geometry import Region
from textual.widgets import Select, TextArea, Tree

from halguru.models.scripted import ScriptedModel
from halguru.store import open_store
from halguru.tui.app import DevApp
from halguru.tui.screens import CompareScreen, EditScreen
from halguru.tui.widgets import ChatPane, KeyBar, MessageBox, TraceTree


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


def chat_text(app: DevApp) -> str:
    return "\n".join(str(w.render()) for w in app.query_one(ChatPane).query("Static"))


async def test_escape_stops_the_run_in_progress_and_the_trace_shows_it_stored(calc_agent: Path) -> None:
    """A runaway answer could only be stopped by quitting (Ctrl+Q); Esc and Ctrl+C did nothing while it
    streamed. Stopped, the trace still said 'streaming 6 tok' of a run the store had as cancelled."""
    model = ScriptedModel([{"text": " ".join(["word"] * 300), "token_delay": 0.02}, "next answer"])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "talk")
        await wait_for(pilot, lambda: app.query_one(TraceTree).streamed > 5)
        assert "Esc stop" in str(app.query_one(KeyBar).render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.run_worker_.is_running)
        run = open_store().get_run(app.stored.id)
        assert run["status"] == "cancelled" and run["output"].startswith("word word")
        shown = labels(app.query_one(TraceTree))
        assert "cancelled" in shown[0] and not any("streaming" in s for s in shown)
        assert "stopped" in chat_text(app) and app.query_one("#prompt", MessageBox).has_focus
        await type_and_send(pilot, "go on")  # the conversation goes on
        await wait_for(pilot, lambda: app.last_answer == "next answer")


async def test_ctrl_c_in_the_message_box_stops_a_run_paused_at_a_breakpoint(calc_agent: Path) -> None:
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f2")
        await type_and_send(pilot, "one")
        await wait_for(pilot, lambda: app.pause is not None)
        assert app.query_one("#prompt", MessageBox).has_focus
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.run_worker_.is_running)
        assert app.pause is None and not app.query_one("#pausebar").has_class("paused")
        assert open_store().get_run(app.stored.id)["status"] == "cancelled"
        await pilot.press("escape")  # nothing runs: nothing happens, and the debugger stays
        await pilot.pause()
        assert app.is_running


async def edit_at_a_model_breakpoint(pilot, app: DevApp) -> None:
    """Send "one" with the model breakpoint on, and open its next message to edit (F4)."""
    await pilot.press("f2")
    await type_and_send(pilot, "one")
    await wait_for(pilot, lambda: app.pause is not None)
    await pilot.press("f4")
    await wait_for(pilot, lambda: isinstance(app.screen, EditScreen))


async def test_escape_still_closes_a_dialog_first(calc_agent: Path) -> None:
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await edit_at_a_model_breakpoint(pilot, app)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, EditScreen) and app.run_worker_.is_running and app.pause is not None
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.last_answer == "You said: one")


async def test_a_reload_to_a_model_that_is_not_there_keeps_the_previous_version(calc_agent: Path) -> None:
    """agent.yaml saved with `model: smolm2` said "reloaded calc", and every message after it failed."""
    app = DevApp(calc_agent)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(0.3)  # the watcher starts
        (calc_agent / "agent.yaml").write_text("name: calc\nmodel: smolm2\ninstructions: You add.\ntools: [add]\n")
        await wait_for(pilot, lambda: app.reload_error is not None)
        assert "unknown model 'smolm2'" in app.reload_error and app.agent.spec.model == "scripted"
        await type_and_send(pilot, "one")
        await wait_for(pilot, lambda: app.last_answer == "You said: one")


async def test_a_renamed_agent_starts_a_new_conversation(calc_agent: Path) -> None:
    """The renamed agent went on in the old agent's conversation, stored as the old one's."""
    app = DevApp(calc_agent)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "one")
        await wait_for(pilot, lambda: app.last_answer == "You said: one")
        (calc_agent / "agent.yaml").write_text("name: adder\nmodel: scripted\ntools: [add]\n")
        await wait_for(pilot, lambda: app.agent.name == "adder")
        assert app.conversation_id is None and "new conversation" in chat_text(app)
        await type_and_send(pilot, "two")
        await wait_for(pilot, lambda: app.last_answer == "You said: two")
    assert {c["agent"] for c in open_store().list_conversations(limit=10)} == {"calc", "adder"}


async def test_the_sidebar_follows_a_renamed_agent(calc_agent: Path) -> None:
    """Renamed in agent.yaml, the agent's new runs never showed in the sidebar: it kept listing the old name's."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(140, 30)) as pilot:
        await type_and_send(pilot, "one")
        await wait_for(pilot, lambda: app.last_answer == "You said: one" and not app.run_worker_.is_running)
        (calc_agent / "agent.yaml").write_text("name: adder\nmodel: scripted\ntools: [add]\n")
        await app.reload()  # what saving the file does
        await type_and_send(pilot, "two")
        await wait_for(pilot, lambda: app.last_answer == "You said: two" and not app.run_worker_.is_running)
        await pilot.pause()
        shown = labels(app.query_one("#runs", Tree))
        assert any("two" in s for s in shown) and not any("one" in s for s in shown)
        assert app.query_one("#agent-filter", Select).value == "adder"


ESCAPES = "\x1b[2J\x1b[31mred\x1b]0;owned\x07 \u202eexe.txt"  # a clear screen, a colour, a title, a bidi override


def raw_controls(text: str) -> bool:
    return any(c in text for c in ("\x1b", "\u202e"))


async def test_outside_text_reaches_no_pane_with_its_escape_sequences(write_agent) -> None:
    """A tool's coloured output (or a visitor's message) went raw to the terminal from the inspector at a
    breakpoint, the F4 editor, the sidebar's full title and the fork's answer diff: the sequences cleared,
    recoloured or retitled the developer's terminal. Shown escaped (as the chat and the trace show it), and an
    edit left as it was keeps the original text."""
    tools = f'from halguru.tools import tool\n\n\n@tool\ndef ls() -> str:\n    """List."""\n    return {ESCAPES!r}\n'
    folder = write_agent("name: shell\nmodel: scripted\ntools: [ls]\n", tools, name="shell")
    model = ScriptedModel([{"tool_calls": [{"name": "ls", "arguments": {}}]}, "Listed."])
    app = DevApp(folder, model=model, watch=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.press("f3")
        await type_and_send(pilot, f"list {ESCAPES}")
        await wait_for(pilot, lambda: app.pause is not None)
        await pilot.press("f5")  # past the call, to its result
        await wait_for(pilot, lambda: app.pause is not None and app.pause.kind == "tool_result")
        assert not raw_controls(app.query_one("#inspector", TextArea).text)
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, EditScreen))
        editor = app.screen.query_one("#editor", TextArea)
        assert not raw_controls(editor.text) and "\\x1b[31mred" in editor.text
        await pilot.press("ctrl+s")  # kept as it was: the model gets the tool's output itself
        await pilot.pause()
        await pilot.press("f3", "f5")
        await wait_for(pilot, lambda: app.last_answer == "Listed.")
        await pilot.press("ctrl+b")
        await pilot.pause()
        runs = app.query_one("#runs")
        runs.focus()
        await pilot.press("down", "down")
        await pilot.pause()
        assert "list" in str(app.query_one("#runtitle").render())
        assert not raw_controls(str(app.query_one("#runtitle").render()))
    result = next(e for e in open_store().get_events(app.stored.id) if e["type"] == "tool_result")
    assert result["content"] == ESCAPES


async def test_a_forks_answer_diff_shows_escape_sequences_escaped(calc_agent: Path) -> None:
    from textual.widgets import TextArea as Area

    from halguru.tui.screens import CompareScreen

    app = DevApp(calc_agent, model=ScriptedModel(["plain", f"now {ESCAPES}"]), watch=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await type_and_send(pilot, "hi")
        await wait_for(pilot, lambda: app.last_answer == "plain" and not app.run_worker_.is_running)
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        shown = "\n".join(a.text for a in app.screen.query(Area))
        assert "now \\x1b[2J" in shown and not raw_controls(shown)


async def test_what_a_tool_prints_shows_in_the_chat(write_agent) -> None:
    """print() in tools.py (or halguru's own notices on stderr: a knowledge folder being indexed) went nowhere
    in the debugger: Textual swallows what is printed while it runs."""
    tools = ('import sys\n\nfrom halguru.tools import tool\n\n\n@tool\ndef add(a: int, b: int) -> int:\n'
             '    """Add."""\n    print(f"debug: a={a} b={b}")\n    for i in range(500):\n'
             '        print(f"line {i}", file=sys.stderr)\n    return a + b\n')
    folder = write_agent("name: calc\nmodel: scripted\ntools: [add]\n", tools, name="calc")
    model = ScriptedModel([{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}, "5."])
    app = DevApp(folder, model=model, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "add")
        await wait_for(pilot, lambda: app.last_answer == "5." and "line 499" in chat_text(app))
        shown = chat_text(app)
        assert "debug: a=2 b=3" in shown
        assert len(app.query_one(ChatPane).children) < 20  # 500 lines are a few notes, not 500 widgets


async def test_a_stopped_run_stops_the_knowledge_ingest_it_started(write_agent) -> None:
    """Esc (or Ctrl+Q) during an agent's first retrieval ended the run, but the ingest of its knowledge folder
    went on in its thread: after Ctrl+Q the terminal came back and the process hung until all 400 files were
    indexed (killed at 300 s)."""
    folder = write_agent("name: kb\nmodel: scripted\nknowledge: [docs]\n", name="kb")
    (folder / "docs").mkdir()
    for i in range(200):
        (folder / "docs" / f"doc{i}.md").write_text(f"# Doc {i}\n\n" + " ".join(f"w{i}x{j}" for j in range(300)))
    app = DevApp(folder, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "what is in the docs?")
        await wait_for(pilot, lambda: "indexing knowledge folder" in chat_text(app), timeout=60)
        await pilot.press("escape")
        await wait_for(pilot, lambda: "stopped after" in chat_text(app), timeout=150)
        assert "of 200 file(s); those are kept" in chat_text(app)


async def test_escape_during_the_first_ingest_stops_it_at_once_and_the_next_run_finishes_the_base(
        write_agent, monkeypatch) -> None:
    """Esc while the agent's first retrieval indexed its knowledge folder stopped the run, but the ingest went on
    to the end of the batch it was embedding and then embedded what was pending (3 s here; 10 s on a slow
    machine): the chat said how far it got only then, and the next message waited for it. It stops within a few
    chunks now, keeps whole files, and the next message's retrieval finishes the base and answers from it."""
    import random
    import threading
    import time

    from halguru import rag
    from halguru.rag import indexer

    folder = write_agent("name: kb\nmodel: scripted\nknowledge: [notes]\n"
                         "retrieval: {mode: auto, top_k: 3, embedder: fast}\n", name="kb")
    (folder / "notes").mkdir()
    rng = random.Random(5)
    words = ["cat", "dog", "price", "shop", "road", "tea"]
    for i in range(40):
        (folder / "notes" / f"n{i}.md").write_text(f"# Note {i}\n\n" + " ".join(rng.choice(words) for _ in range(2000)))
    real, second_batch, count = indexer.embed_passages, threading.Event(), [0]

    def slow(model, texts):
        count[0] += len(texts)
        if count[0] > indexer.BATCH_CHUNKS:
            second_batch.set()
        time.sleep(0.02 * len(texts))  # 2.6 s a batch of 128 chunks
        return real(model, texts)

    monkeypatch.setattr(indexer, "embed_passages", slow)
    app = DevApp(folder, model=ScriptedModel(["from the notes"]), watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "what is the price")
        await wait_for(pilot, second_batch.is_set, timeout=60)
        started = time.monotonic()
        await pilot.press("escape")
        await wait_for(pilot, lambda: "indexing knowledge base 'kb-notes' stopped after" in chat_text(app))
        took = time.monotonic() - started
        assert took < 1.5, f"{took:.1f} s for the ingest to stop"
        kept = rag.open_base("kb-notes").info().documents
        assert 0 < kept < 40 and rag.search("kb-notes", "price tea", k=3)  # whole files, searchable
        monkeypatch.setattr(indexer, "embed_passages", real)
        await type_and_send(pilot, "what is the price")
        await wait_for(pilot, lambda: app.last_answer == "from the notes", timeout=60)
    assert rag.open_base("kb-notes").info().documents == 40


def screen_lines(app: DevApp, region: Region) -> list[str]:
    """What the terminal shows in ``region`` (what overlaps or is clipped is not there)."""
    strips = app.screen._compositor.render_strips()[region.y:region.bottom]
    return [strip.crop(region.x, region.right).text for strip in strips]


async def test_the_edit_dialog_says_its_keys_on_a_40_column_terminal(calc_agent: Path) -> None:
    """At 40x15 the edit dialog's title was cut at its edge: "Esc to cancel" could not be read."""
    app = DevApp(calc_agent, watch=False)
    async with app.run_test(size=(40, 15)) as pilot:
        await edit_at_a_model_breakpoint(pilot, app)
        await pilot.pause()
        shown = " ".join(" ".join(screen_lines(app, app.screen.query_one(Vertical).content_region)).split())
        assert "Ctrl+S to keep, Esc to cancel" in shown


async def test_a_replays_verdict_is_read_whole_at_80_columns(calc_agent: Path) -> None:
    """The comparison's title line was cut at the dialog's edge: why a stopped run cannot be replayed was lost
    once its toast had gone."""
    model = ScriptedModel([{"text": " ".join(["word"] * 300), "token_delay": 0.02}])
    app = DevApp(calc_agent, model=model, watch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await type_and_send(pilot, "talk")
        await wait_for(pilot, lambda: app.query_one(TraceTree).streamed > 3)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app.run_worker_.is_running)
        await pilot.press("f7")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        await pilot.pause()
        shown = " ".join(" ".join(screen_lines(app, app.screen.query_one(Vertical).content_region)).split())
        assert "there are none past that point — Esc to close" in shown


async def test_a_message_sent_while_a_call_waits_for_approval_keeps_the_call_decidable(mailer_agent: Path) -> None:
    """A message sent meanwhile was refused by the runtime, and the debugger forgot the waiting call: the pause
    bar went, F9 said "no tool call waits for approval", and the trace of the paused run was wiped."""
    app = DevApp(mailer_agent, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await type_and_send(pilot, "mail ann")
        await wait_for(pilot, lambda: app.awaiting is not None)
        await type_and_send(pilot, "actually, wait")
        await pilot.pause()
        assert app.query_one("#prompt", MessageBox).value == "actually, wait"  # kept, to send once decided
        assert any("F9" in n.message for n in app._notifications)
        assert app.query_one("#pausebar").has_class("paused") and any("send_email" in s for s in labels(
            app.query_one(TraceTree)))
        await pilot.press("f9")
        await wait_for(pilot, lambda: isinstance(app.screen, EditScreen))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.last_answer == "Sent it.")
