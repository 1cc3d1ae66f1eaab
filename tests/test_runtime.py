"""The runtime loop, through the scripted model: events, tools, limits, errors, conversations."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from halguru import Agent, AgentSpec, HalguruError, load_agent, run, run_sync, tool
from halguru.agents.events import parse_event
from halguru.agents.runtime import SHUTDOWN, iter_events
from halguru.errors import ModelError
from halguru.models.scripted import ScriptedModel
from halguru.store import open_store

CALC = """\
name: calc
model: scripted
instructions: Use tools.
tools: [calculator]
limits: {max_steps: 3}
"""


def call(name, **arguments):
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def types(result):
    return [e.type for e in result.events if e.type != "token"]


def test_plain_answer_streams_tokens_and_is_recorded(write_agent):
    result = run_sync(write_agent(CALC), "Hello there")
    assert result.ok and result.output == "You said: Hello there"
    assert types(result) == ["run_started", "model_call", "model_result", "run_finished"]
    tokens = [e.text for e in result.events if e.type == "token"]
    assert len(tokens) > 1 and "".join(tokens) == result.output
    assert [e.seq for e in result.events] == list(range(len(result.events)))
    stored = open_store().get_run(result.run_id)
    assert stored["status"] == "ok" and stored["output"] == result.output and stored["steps"] == 1


def test_a_nul_in_the_input_is_what_every_store_keeps_from_the_start(write_agent):
    """PostgreSQL cannot store U+0000 and writes U+FFFD: the run itself sees U+FFFD, so its answer is the one
    stored, and an idempotent request's replay repeats it on either backend."""
    result = run_sync(write_agent(CALC), "a\x00b")
    assert result.output == "You said: a\ufffdb"
    assert result.events[0].input == "a\ufffdb"
    assert [m.content for m in open_store().get_messages(result.conversation_id)] == ["a\ufffdb", result.output]


ODD = """\
name: odd
model: scripted
instructions: Use tools.
tools: [listing, opening]
"""
ODD_TOOLS = """\
from halguru.tools import tool

@tool
def listing() -> str:
    \"\"\"Names in a folder (os.listdir gives a name that is not UTF-8 as lone surrogates).\"\"\"
    return "a-\\udcff-b-\\x00-c"

@tool
def opening() -> str:
    \"\"\"Opens a file that is not there.\"\"\"
    raise ValueError("cannot read x-\\udcff.txt")
"""


def test_tool_text_with_a_nul_or_bytes_that_are_not_utf8_is_what_the_model_reads_and_every_store_keeps(
        write_agent, store_url: str, monkeypatch) -> None:
    """A lone surrogate in a tool's result or error failed the run's final write on both backends (a traceback,
    the run left `running`); a NUL reached the model as it was, and was stored so on SQLite but as U+FFFD on
    PostgreSQL. Both are U+FFFD from the tool on, as in a run's input."""
    from halguru.config import reset_settings

    if not store_url.startswith("sqlite:"):
        monkeypatch.setenv("HALGURU_DATABASE_URL", store_url)
        reset_settings()
    model = ScriptedModel([call("listing"), call("opening"), "Done."])
    result = run_sync(write_agent(ODD, ODD_TOOLS), "List it", model=model)
    assert result.ok and result.output == "Done."
    read = [model.requests[i].messages[-1].content for i in (1, 2)]
    assert read == ["a-\ufffd-b-\ufffd-c", "error: opening raised ValueError: cannot read x-\ufffd.txt"]
    stored = [m.content for m in open_store().get_messages(result.conversation_id) if m.role == "tool"]
    assert stored == read


def test_tool_loop(write_agent):
    model = ScriptedModel([call("calculator", expression="17*23"), "17*23 is 391."])
    result = run_sync(write_agent(CALC), "What is 17*23?", model=model)
    assert types(result) == ["run_started", "model_call", "model_result", "tool_call", "tool_result",
                             "model_call", "model_result", "run_finished"]
    [tool_result] = [e for e in result.events if e.type == "tool_result"]
    assert tool_result.content == "391" and tool_result.step == 1
    second = model.requests[1]
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "tool"]
    assert second.messages[-1].content == "391"
    assert [t.name for t in second.tools] == ["calculator"]
    assert result.output == "17*23 is 391."


def test_failing_tool_is_told_to_the_model_and_the_run_goes_on(write_agent):
    model = ScriptedModel([call("calculator", expression="1/0"), "Cannot divide by zero."])
    result = run_sync(write_agent(CALC), "1/0?", model=model)
    assert result.ok
    errors = [e for e in result.events if e.type == "error"]
    assert errors and errors[0].kind == "tool" and "division by zero" in errors[0].message
    assert model.requests[1].messages[-1].content == "error: division by zero"


def test_tool_outside_the_allow_list_is_refused(write_agent):
    model = ScriptedModel([call("http_get", url="http://example.com"), "OK."])
    result = run_sync(write_agent(CALC), "fetch", model=model)
    [tool_result] = [e for e in result.events if e.type == "tool_result"]
    assert tool_result.is_error and "unknown tool 'http_get'" in tool_result.content


def test_max_steps_ends_the_run_as_limited(write_agent):
    """As a team's or a workflow's run at its limits (a plain agent's said failed, counted as an error)."""
    model = ScriptedModel([call("calculator", expression=f"{i}+1") for i in range(5)])
    result = run_sync(write_agent(CALC), "loop", model=model)
    assert result.status == "limited" and "limits.max_steps" in result.error
    assert len([e for e in result.events if e.type == "model_call"]) == 3
    assert open_store().get_run(result.run_id)["status"] == "limited"


def test_repeated_identical_call_is_not_rerun_and_the_model_must_answer(write_agent):
    model = ScriptedModel([call("calculator", expression="2+2"), call("calculator", expression="2+2"), "4."])
    result = run_sync(write_agent(CALC), "2+2?", model=model)
    assert result.ok and result.output == "4."
    assert [r.content for r in result.events if r.type == "tool_result"] == ["4", "4"]
    assert model.requests[2].tool_choice == "none"


def test_malformed_tool_call_is_counted_and_the_model_is_told(write_agent):
    model = ScriptedModel([{"raw_tool_call": '{"name": "calculator", "arguments": {'}, "Sorry."])
    result = run_sync(write_agent(CALC), "hm", model=model)
    assert result.ok and result.output == "Sorry."
    first_result = next(e for e in result.events if e.type == "model_result")
    assert first_result.format_errors == 1
    assert any(e.type == "error" and e.kind == "format" for e in result.events)
    assert "could not be parsed" in model.requests[1].messages[-1].content


def test_model_error_fails_the_run_cleanly(write_agent):
    result = run_sync(write_agent(CALC), "hi", model=ScriptedModel([{"error": "connection refused"}]))
    assert result.status == "failed" and result.error == "connection refused"
    assert result.events[-2].type == "error" and result.events[-2].fatal
    assert open_store().get_run(result.run_id)["error"] == "connection refused"


def test_missing_model_fails_the_run_and_is_stored(write_agent):
    result = run_sync(write_agent(CALC.replace("model: scripted", "model: /nowhere/model.gguf")), "hi")
    assert result.status == "failed"
    assert "GGUF model file not found: /nowhere/model.gguf" in result.error
    assert open_store().get_run(result.run_id)["status"] == "failed"


def test_timeout_limit(write_agent):
    folder = write_agent(CALC.replace("limits: {max_steps: 3}", "limits: {timeout: 0.3}"))
    model = ScriptedModel([{"text": "slow " * 50, "token_delay": 0.05}])
    result = run_sync(folder, "hi", model=model)
    assert result.status == "limited" and "limits.timeout" in result.error


def test_a_run_that_times_out_mid_answer_keeps_what_it_streamed(write_agent):
    folder = write_agent(CALC.replace("limits: {max_steps: 3}", "limits: {timeout: 0.5}"))
    model = ScriptedModel([{"text": "slow " * 50, "token_delay": 0.05}])
    result = run_sync(folder, "hi", model=model)
    streamed = "".join(e.text for e in result.events if e.type == "token")
    assert result.status == "limited" and streamed.startswith("slow slow")
    assert result.output == streamed
    stored = open_store()
    assert stored.get_run(result.run_id)["output"] == streamed
    assert [(m.role, m.content) for m in stored.get_messages(result.conversation_id)] == [
        ("user", "hi"), ("assistant", streamed)]


def test_a_run_that_times_out_in_a_tool_call_stores_why_the_call_has_no_result(write_agent):
    """A run past limits.timeout while a tool ran left the call without a result in the conversation
    (`halguru logs conversation`: `→ hang({})`, then nothing), unlike a cancelled or interrupted run's: whoever
    read it back, and the next turn's model, got no word of what became of the call."""
    folder = write_agent("name: hangs\nmodel: scripted\ntools: [hang]\nlimits: {timeout: 0.5}\n")
    (folder / "tools.py").write_text("import time\nfrom halguru import tool\n\n@tool(timeout=30)\n"
                                     "def hang() -> str:\n    \"\"\"Hang.\"\"\"\n    time.sleep(3)\n    return 'x'\n")
    result = run_sync(folder, "go", model=ScriptedModel([call("hang")]))
    assert result.status == "limited" and "limits.timeout" in result.error
    messages = open_store().get_messages(result.conversation_id)
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[2].name == "hang" and messages[2].tool_call_id == messages[1].tool_calls[0].id
    assert messages[2].content == f"error: {result.error} before this call finished"
    ends = [e for e in result.events if e.type == "tool_result"]  # the trace says how the call ended, and when
    assert [(e.name, e.content, e.is_error) for e in ends] == [("hang", messages[2].content, True)]
    assert 400 <= ends[0].duration_ms < 3000
    stored = [e for e in open_store().get_events(result.run_id) if e["type"] == "tool_result"]
    assert [e["content"] for e in stored] == [messages[2].content]


class _DropsMidAnswer(ScriptedModel):
    """An upstream whose connection drops after a few tokens."""

    async def stream(self, request):
        count = 0
        async for chunk in super().stream(request):
            yield chunk
            count += 1
            if count == 4:
                raise ModelError("connection reset by peer")


def test_a_model_that_fails_mid_answer_keeps_what_it_streamed_beside_the_error(write_agent):
    folder = write_agent(CALC)
    result = run_sync(folder, "hi", model=_DropsMidAnswer(["one two three four five six"]))
    assert result.status == "failed" and "connection reset by peer" in result.error
    assert result.output == "one two three"
    assert [m.content for m in open_store().get_messages(result.conversation_id)] == ["hi", "one two three"]
    model = ScriptedModel(["Sorry, I was cut off."])  # the next turn's model sees what the reader saw
    run_sync(folder, "go on", result.conversation_id, model=model)
    assert [(m.role, m.content) for m in model.requests[0].messages][-2:] == [
        ("assistant", "one two three"), ("user", "go on")]


def test_a_model_that_fails_before_answering_stores_no_answer(write_agent):
    result = run_sync(write_agent(CALC), "hi", model=ScriptedModel([{"error": "connection refused"}]))
    assert result.status == "failed" and result.output in (None, "")
    assert [m.content for m in open_store().get_messages(result.conversation_id)] == ["hi"]


def test_conversation_keeps_history(write_agent):
    folder = write_agent(CALC)
    model = ScriptedModel(["Nice to meet you, Ada.", "Your name is Ada."])
    first = run_sync(folder, "I am Ada.", model=model)
    second = run_sync(folder, "What is my name?", first.conversation_id, model=model)
    assert second.conversation_id == first.conversation_id
    sent = [(m.role, m.content) for m in model.requests[1].messages]
    assert sent == [("system", "Use tools."), ("user", "I am Ada."), ("assistant", "Nice to meet you, Ada."),
                    ("user", "What is my name?")]
    stored = open_store().get_messages(first.conversation_id)
    assert [m.content for m in stored][-1] == "Your name is Ada."


def test_unknown_conversation_is_an_error(write_agent):
    from halguru.errors import HalguruError

    with pytest.raises(HalguruError, match="no conversation 'conv_nope'"):
        run_sync(write_agent(CALC), "hi", "conv_nope")


def cancel_when(events: Any, ready: Callable[[list[Any]], bool]) -> list[Any]:
    """Consume a run's ``events`` and cancel it (as Ctrl-C does) once ``ready(events seen)``; the events seen."""
    seen: list[Any] = []

    async def consume() -> None:
        async for event in events:
            seen.append(event)

    async def main() -> None:
        task = asyncio.create_task(consume())
        for _ in range(3000):
            if ready(seen) or task.done():
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return seen


def test_cancelling_a_run_keeps_the_partial_answer(write_agent):
    folder = write_agent(CALC)
    model = ScriptedModel([{"text": "one two three four five six seven eight", "token_delay": 0.05}])
    # cancelled after its first two tokens, not after a fixed 0.18 s: on a slow machine loading the agent
    # and opening the store took longer than that, and the run was cancelled before it started or streamed
    events = cancel_when(run(folder, "count", model=model), lambda seen: sum(e.type == "token" for e in seen) >= 2)
    seen = [events[0].run_id, *(e.text for e in events if e.type == "token")]
    store = open_store()
    stored = store.get_run(seen[0])
    assert stored["status"] == "cancelled"
    partial = stored["output"]
    assert partial and partial == "".join(seen[1:]) and partial != "one two three four five six seven eight"
    assert store.get_messages(stored["conversation_id"])[-1].content == partial
    # the pieces streamed before the cut were generated: counted (a cancelled run said 0+0 tokens)
    assert stored["completion_tokens"] == len(seen) - 1
    assert stored["prompt_tokens"] > 0  # the prompt was read before the cut (it said 0)


SLOW = """\
name: tooly
model: scripted
tools: [slow]
"""
SLOW_TOOLS = """\
import time
from halguru import tool


@tool
def slow(seconds: float) -> str:
    \"\"\"Wait a while.\"\"\"
    time.sleep(seconds)
    return "slept"
"""


def test_a_call_cancelled_before_its_result_gets_one_so_the_next_turn_sends_a_valid_conversation(write_agent):
    """Ctrl-C while a tool ran kept the assistant's call without a result: every later request sent it, and an
    OpenAI-compatible endpoint refuses that for good."""
    folder = write_agent(SLOW, SLOW_TOOLS)
    model = ScriptedModel([{"text": "Let me wait.", "tool_calls": [{"name": "slow", "arguments": {"seconds": 5}}]},
                           "done"])
    seen = cancel_when(run(folder, "go", model=model), lambda seen: any(e.type == "tool_call" for e in seen))
    conversation = seen[0].conversation_id
    messages = open_store().get_messages(conversation)
    assert [m.role for m in messages] == ["user", "assistant", "tool"]  # the reply's text once, with its call
    assert messages[1].content == "Let me wait." and messages[1].tool_calls[0].name == "slow"
    assert messages[2].tool_call_id == messages[1].tool_calls[0].id
    assert messages[2].content == "error: cancelled by the user before this call finished"
    run_id = seen[0].run_id  # the trace, too, says how the call ended (no one was listening for the event)
    stored = [e for e in open_store().get_events(run_id) if e["type"] == "tool_result"]
    assert [(e["name"], e["content"], e["is_error"]) for e in stored] == [("slow", messages[2].content, True)]
    result = run_sync(folder, "again", conversation, model=model)
    assert result.ok and result.output == "done"
    sent = model.requests[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool", "user"]


def test_a_conversation_stored_with_a_call_but_no_result_is_sent_with_one(write_agent):
    """Conversations an older version stored with a dangling call are repaired in every request, not refused."""
    from halguru.models.base import Message, ToolCallRequest

    store, folder = open_store(), write_agent(CALC)
    first = run_sync(folder, "hi")
    dangling = [Message(role="user", content="what is 1+1?"),
                Message(role="assistant", tool_calls=[ToolCallRequest(id="c1", name="calculator"),
                                                      ToolCallRequest(id="c2", name="calculator")]),
                Message(role="tool", content="2", tool_call_id="c1", name="calculator")]
    store.start_run("run_old", first.conversation_id, "calc", "scripted", "what is 1+1?", existing=True)
    summary = {"status": "cancelled", "output": "", "duration_ms": 1, "steps": 1, "prompt_tokens": 1,
               "completion_tokens": 1}
    store.finish_run("run_old", first.conversation_id, summary, [], dangling)
    model = ScriptedModel(["ok"])
    assert run_sync(folder, "next", first.conversation_id, model=model).ok
    sent = model.requests[0].messages
    assert [(m.role, m.tool_call_id) for m in sent[-5:]] == [
        ("user", None), ("assistant", None), ("tool", "c1"), ("tool", "c2"), ("user", None)]
    assert sent[-2].content == "error: no result was recorded for this call"


class _CutModel:
    """Replies cut at max_tokens: an answer, or (``call``) a constrained tool call cut before it was complete."""

    name = "cut"

    def __init__(self, call: bool = False):
        self.call = call

    async def stream(self, request):
        from halguru.models.base import FormatErrorChunk, TextChunk, UsageChunk

        if self.call:
            yield FormatErrorChunk('{"name": "calculator", "arguments": {"expression": "17', "Unterminated string")
            self.call = False
        else:
            yield TextChunk("a long answer")
        yield UsageChunk(prompt_tokens=5, completion_tokens=request.settings.max_tokens, finish_reason="length")


def test_an_answer_cut_at_max_tokens_names_the_limit_that_cut_it(write_agent):
    """It always said "raise max_tokens in agent.yaml", though `--max-tokens 64` had set it."""
    from halguru.agents.describe import note

    folder = write_agent(CALC.replace("limits: {max_steps: 3}", "limits: {max_steps: 3, max_tokens: 100}"))
    flag = run_sync(folder, "hi", model=_CutModel(), sampling={"max_tokens": 64})
    [result] = [e for e in flag.events if e.type == "model_result"]
    assert "cut at max_tokens 64 (set for this run: --max-tokens" in note(result)
    own = run_sync(folder, "hi", model=_CutModel())
    [result] = [e for e in own.events if e.type == "model_result"]
    assert f"cut at max_tokens 100 (limits.max_tokens in {folder}'s agent.yaml)" in note(result)


def test_a_tool_call_cut_at_max_tokens_says_so_not_unparseable(write_agent):
    """`--max-tokens 8` with a forced call said "unparseable tool call: ... Unterminated string"."""
    from halguru.agents.describe import note

    result = run_sync(write_agent(CALC), "17*23?", model=_CutModel(call=True), sampling={"max_tokens": 8})
    [error] = [e for e in result.events if e.type == "error"]
    assert error.message == ("the tool call was cut at max_tokens 8 (set for this run: --max-tokens, `halguru dev`'s "
                             "Ctrl+O or the request) before it was complete; raise it")
    first = next(e for e in result.events if e.type == "model_result")
    assert note(first) is None  # the error says it once


def test_record_false_stores_nothing(write_agent):
    run_sync(write_agent(CALC), "hi", record=False)
    assert open_store().list_runs() == []


def test_python_api_without_yaml():
    @tool
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    agent = Agent.from_spec(AgentSpec(name="py", model="scripted"), tools=[shout])
    model = ScriptedModel([call("shout", text="hi"), "Done."])
    result = run_sync(agent, "shout hi", model=model)
    assert [e.content for e in result.events if e.type == "tool_result"] == ["HI"]
    assert list(agent.tools) == ["shout"]


def test_sync_iterator_and_event_round_trip(write_agent):
    events = list(iter_events(write_agent(CALC), "ping"))
    assert events[0].type == "run_started" and events[-1].type == "run_finished"
    for event in events:
        assert parse_event(event.model_dump_json()) == event


def test_stored_events_rebuild_the_run(write_agent):
    model = ScriptedModel([call("calculator", expression="6*7"), "42."])
    result = run_sync(load_agent(write_agent(CALC)), "6*7?", model=model)
    stored = [parse_event(e) for e in open_store().get_events(result.run_id)]
    live = [e for e in result.events if e.type != "token"]
    assert stored == live


@pytest.mark.parametrize(("reason", "status"), [(None, "cancelled"), ("shutdown", "interrupted")])
def test_a_run_cut_while_its_start_is_written_is_stored_by_why_it_was_cut(write_agent, reason, status):
    """The start is written on a thread; a cut meanwhile is recorded once the start is: a user's cancel as
    cancelled, a server shutdown as interrupted (resumable), as it would be later in the run."""
    store = open_store()
    writing, release = threading.Event(), threading.Event()
    start_run = store.start_run

    def slow_start_run(*args, **kwargs):
        writing.set()
        release.wait(10)
        return start_run(*args, **kwargs)

    store.start_run = slow_start_run  # type: ignore[method-assign]

    async def main():
        task = asyncio.create_task(run(write_agent(CALC), "hi", model="scripted", store=store).__anext__())
        while not writing.is_set():
            await asyncio.sleep(0.01)
        task.cancel(msg=SHUTDOWN if reason else None)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(1000):  # the end is recorded by the start's done-callback, on this loop
            if (runs := store.list_runs()) and runs[0]["status"] != "running":
                return runs
            await asyncio.sleep(0.01)
        return store.list_runs()

    assert [r["status"] for r in asyncio.run(main())] == [status]


def test_a_caller_leaving_right_after_run_started_leaves_a_cancelled_run_not_a_running_one(write_agent):
    """``break`` on the first event (``async for event in run(...)``, or ``iter_events``) left the run
    'running' in the store for good, after the process was long gone; leaving after a later event said
    'cancelled'."""
    agent = load_agent(write_agent(CALC))

    async def first_event_only() -> None:
        async with contextlib.aclosing(run(agent, "async")) as events:
            async for _ in events:
                break

    asyncio.run(first_event_only())
    for _ in iter_events(agent, "sync"):
        break
    stored = {r["input"]: (r["status"], r["error"]) for r in open_store().list_runs()}
    assert stored == {"async": ("cancelled", "cancelled by the user"), "sync": ("cancelled", "cancelled by the user")}


@pytest.mark.parametrize(("blocking", "instead"), [
    (lambda agent: run_sync(agent, "hi"), "await halguru.agents.runtime.run_to_result(...)"),
    (lambda agent: next(iter_events(agent, "hi")), "async for event in halguru.run(...)"),
])
def test_a_blocking_call_inside_an_event_loop_says_what_to_use(write_agent, blocking, instead):
    """iter_events in async code (a notebook) raised asyncio's 'Cannot run the event loop while another loop is
    running', where run_sync said what to use instead."""
    agent = load_agent(write_agent(CALC))

    async def in_a_loop() -> None:
        blocking(agent)

    with pytest.raises(HalguruError, match="cannot be called inside a running event loop") as refused:
        asyncio.run(in_a_loop())
    assert instead in str(refused.value) and open_store().list_runs() == []


def test_the_public_api_type_checks_strictly_as_the_readme_imports_it(tmp_path):
    """``from halguru import load_agent, run, run_sync`` (the README's example) failed ``mypy --strict``
    ('Module "halguru" does not explicitly export attribute "run"'): ``__all__`` was built from a dict, which
    type checkers cannot read."""
    import halguru

    api = pytest.importorskip("mypy.api")
    script = tmp_path / "use.py"
    script.write_text(f"from halguru import {', '.join(n for n in halguru.__all__ if n != '__version__')}\n"
                      "from halguru import __version__\n", encoding="utf-8")
    out, err, code = api.run(["--strict", "--cache-dir", str(tmp_path / "cache"), str(script)])
    assert code == 0, out + err
    assert sorted(halguru.__all__) == sorted([*halguru._EXPORTS, "__version__"])


def test_tools_py_imports_the_modules_beside_it_from_any_folder_each_agent_its_own_and_afresh_on_reload(
        tmp_path, monkeypatch):
    """`from helpers import label` in tools.py worked only when halguru ran inside the agent's folder (`cd agent
    && halguru run .`); `halguru run agent` from its parent, `serve` or a team's member folder failed with
    `ModuleNotFoundError: No module named 'helpers'`."""
    import asyncio

    from halguru.tools.registry import execute_tool

    def project(name: str, value: str):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "agent.yaml").write_text(f"name: {name}\nmodel: scripted\ntools: [which]\n")
        (folder / "helpers.py").write_text(f"def label() -> str:\n    return {value!r}\n")
        (folder / "tools.py").write_text("from halguru import tool\nfrom helpers import label\n\n\n@tool\n"
                                         "def which() -> str:\n    \"\"\"Say which.\"\"\"\n    return label()\n")
        return folder

    first, second = project("first", "one"), project("second", "two")
    monkeypatch.chdir(tmp_path)  # neither agent's folder

    def call(folder) -> str:
        return asyncio.run(execute_tool(load_agent(folder).tools["which"], {}))

    assert (call(first), call(second)) == ("one", "two")
    (first / "helpers.py").write_text("def label() -> str:\n    return 'edited'\n")
    assert call(first) == "edited", "a reload reads the edited helper"
    assert "helpers" not in __import__("sys").modules


def test_a_package_installed_inside_the_agents_folder_is_not_imported_again(tmp_path, monkeypatch):
    """With a virtual environment inside the agent's folder, the modules beside tools.py are dropped after each
    load: an installed package there (numpy imports once per process) must keep its sys.modules entry."""
    import sys

    site = tmp_path / "agent" / ".venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "installed_pkg.py").write_text("VALUE = 'kept'\n")
    monkeypatch.syspath_prepend(str(site))
    (tmp_path / "agent" / "agent.yaml").write_text("name: agent\nmodel: scripted\ntools: [which]\n")
    (tmp_path / "agent" / "tools.py").write_text(
        "from installed_pkg import VALUE\nfrom halguru import tool\n\n\n@tool\ndef which() -> str:\n"
        "    \"\"\"Say which.\"\"\"\n    return VALUE\n")
    monkeypatch.delitem(sys.modules, "installed_pkg", raising=False)
    load_agent(tmp_path / "agent")
    first = sys.modules["installed_pkg"]
    load_agent(tmp_path / "agent")
    assert sys.modules["installed_pkg"] is first


def test_run_sync_does_not_format_every_event_and_its_result_prints_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncio.run formats its finished main task, result and all, when it puts SIGINT's handler back: run_sync
    of 90 tool calls spent 0.45 s writing out every event (and print(result) filled the screen with them)."""
    from halguru.agents import events
    from halguru.models.scripted import ScriptedModel

    folder = tmp_path / "caller"
    folder.mkdir()
    (folder / "agent.yaml").write_text("name: caller\nmodel: scripted\ntools: [calculator]\nlimits:\n  max_steps: 30\n")
    script = [*({"tool_calls": [{"name": "calculator", "arguments": {"expression": f"{i} + 1"}}]}
                for i in range(20)), "All added."]
    formatted = []
    monkeypatch.setattr(events.BaseEvent, "__repr__", lambda self: formatted.append(self) or "event")
    result = run_sync(folder, "add them", model=ScriptedModel(script))
    assert result.status == "ok" and len(result.tool_calls()) == 20
    assert formatted == []
    shown = repr(result)
    assert shown.startswith(f"RunResult(run_id={result.run_id!r}, status='ok', output='All added.'")
    assert shown.endswith(f"events=<{len(result.events)}>)") and formatted == []
