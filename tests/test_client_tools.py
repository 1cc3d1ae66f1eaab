"""A caller's own tools (``run(client_tools=...)``, the OpenAI endpoint's ``tools``): what the model is asked, and
how the run ends when it calls one."""

from __future__ import annotations

from halguru import run_sync
from halguru.agents.client_tools import ClientTools
from halguru.models.base import Message, ToolSpec
from halguru.models.scripted import ScriptedModel
from halguru.store import open_store

CALC = """\
name: calc
model: scripted
instructions: Use tools.
tools: [calculator]
"""
WEATHER = ToolSpec(name="get_weather", description="The weather.", parameters={"type": "object", "properties": {}})


def _calls(*names: str) -> dict:
    return {"tool_calls": [{"id": f"c{i}", "name": name, "arguments": {}} for i, name in enumerate(names)]}


def test_the_callers_choice_shapes_the_first_model_call_only(write_agent) -> None:
    for choice, tools, asked in (("required", ["calculator", "get_weather"], "required"),
                                 ("get_weather", ["get_weather"], "required"),
                                 ("none", ["calculator"], "auto"),
                                 ("auto", ["calculator", "get_weather"], "auto")):
        model = ScriptedModel([{"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]}, "2"])
        result = run_sync(write_agent(CALC), "1+1?", model=model, client_tools=ClientTools((WEATHER,), choice, False))
        assert result.output == "2", choice
        first, second = model.requests
        assert ([t.name for t in first.tools], first.tool_choice) == (tools, asked), choice
        assert second.tool_choice == "auto" and not second.parallel_tool_calls


def test_a_call_of_the_callers_tool_ends_the_run_after_the_agents_own(write_agent, cli) -> None:
    model = ScriptedModel([{"tool_calls": [{"id": "a", "name": "calculator", "arguments": {"expression": "6*7"}},
                                           {"id": "b", "name": "get_weather", "arguments": {}}]}])
    result = run_sync(write_agent(CALC), "6*7, and the weather?", model=model,
                      client_tools=ClientTools((WEATHER,)))
    assert result.status == "ok" and len(model.requests) == 1
    assert [(e.name, e.client) for e in result.tool_calls()] == [("calculator", False), ("get_weather", True)]
    stored = open_store().get_messages(result.conversation_id)
    assert [(m.role, m.tool_call_id) for m in stored] == [("user", None), ("assistant", None), ("tool", "a")]
    # the caller's result starts the next run: the model reads both results, none made up for the caller's call
    model = ScriptedModel(["42, and sunny."])
    after = run_sync(write_agent(CALC), "get_weather: sunny", result.conversation_id, model=model,
                     client_tools=ClientTools((WEATHER,)),
                     tool_results=[Message(role="tool", content="sunny", tool_call_id="b", name="get_weather")])
    assert after.output == "42, and sunny."
    assert [(m.role, m.tool_call_id, m.content) for m in model.requests[0].messages][-3:] == [
        ("assistant", None, ""), ("tool", "a", "42"), ("tool", "b", "sunny")]
    assert [(e.type, getattr(e, "name", None)) for e in after.events][:2] == [
        ("run_started", None), ("tool_result", "get_weather")]
    # both replay from their records: the call left to the caller, then the run its result started
    for done in (result, after):
        assert "identical answer, event for event" in cli("logs", "replay", done.run_id).output
    assert "get_weather() → left to the client" in cli("logs", "show", result.run_id).output
    assert "tool_result get_weather · from the client · sunny" in cli("logs", "show", after.run_id).output


GATED_TOOLS = '''
import asyncio
from pathlib import Path
from halguru import tool

@tool
async def clock() -> str:
    """The time of day."""
    flag = Path(__file__).parent / "hang"
    if flag.exists():
        (Path(__file__).parent / "in-clock").touch()
        await asyncio.sleep(60)
    return "12:30"
'''


async def test_a_continuation_cut_in_the_approved_call_still_leaves_the_client_its_call(write_agent, tmp_path):
    """A reply called the caller's get_weather and the agent's clock (under approvals:); approved, the continuation
    was cut inside clock (a Ctrl-C, a crash), and `halguru runs resume` of it ran get_weather here: "error:
    unknown tool 'get_weather'". Now the resume leaves it to the caller as the continuation did: it asks for the
    clock's approval again (whether it ran is unknown), and once approved the run ends with get_weather left."""
    import asyncio

    from halguru.agents.loader import load_agent
    from halguru.agents.runtime import collect_result, run
    from halguru.orchestration import approvals, durable

    script = tmp_path / "script.yaml"
    script.write_text("- tool_calls: [{id: c0, name: get_weather, arguments: {}}, {id: c1, name: clock, "
                      "arguments: {}}]\n")
    folder = write_agent(f"name: desk\nmodel: scripted:{script}\ntools: [clock]\napprovals: [clock]\n", GATED_TOOLS)
    store = open_store()
    paused = await collect_result(run(load_agent(folder), "weather and time?", store=store,
                                      client_tools=ClientTools((WEATHER,))))
    assert paused.status == "paused"
    (folder / "hang").touch()
    cut = asyncio.create_task(collect_result(approvals.resume_events(paused.run_id, store=store)))
    for _ in range(400):
        if (folder / "in-clock").exists():
            break
        await asyncio.sleep(0.05)
    cut.cancel()
    await asyncio.gather(cut, return_exceptions=True)
    (folder / "hang").unlink()
    [continuation] = [r for r in store.list_runs(10) if r["id"] != paused.run_id]
    assert continuation["status"] == "cancelled"

    resumed = await collect_result(durable.resume_events(continuation["id"], store=store))
    results = [(e.name, e.content) for e in resumed.events if e.type == "tool_result"]
    assert results == [], results  # before: [('get_weather', "error: unknown tool 'get_weather'; available: clock")]
    assert resumed.status == "paused"
    assert [(e.name, e.client) for e in resumed.tool_calls()] == [("get_weather", True)]
    done = await collect_result(approvals.resume_events(resumed.run_id, store=store))
    assert done.status == "ok"
    assert [(e.name, e.client) for e in done.tool_calls()] == [("get_weather", True), ("clock", False)]
    assert [(e.name, e.content) for e in done.events if e.type == "tool_result"] == [("clock", "12:30")]
