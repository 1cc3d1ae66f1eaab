"""A conversation's trace grows with its length, not its square: a stored model call refers to the history.

Every model call sends the conversation's whole history; stored whole, turn n's trace held n turns, so a
300-turn chat stored ~45,000 copies of messages. Read back, each call's messages are whole again.
"""

from __future__ import annotations

import asyncio

from halguru import Agent, AgentSpec, run_sync, tool
from halguru.agents.events import parse_event
from halguru.agents.replay import load_run, replay
from halguru.models.scripted import ScriptedModel

LONG = "x" * 2000  # each turn's message: the history's size dwarfs everything else in a call


def agent() -> Agent:
    @tool
    def echo(text: str) -> str:
        """Repeat a text."""
        return text

    return Agent.from_spec(AgentSpec(name="chatty", model="scripted", instructions="Be brief."), tools=[echo])


def chat(store, turns: int, conversation: str | None = None, model=None):
    results = []
    for n in range(turns):
        result = run_sync(agent(), f"turn {n} {LONG}", conversation, store=store, model=model)
        assert result.ok, result.error
        conversation = result.conversation_id
        results.append(result)
    return results


async def collect(stream):
    return [e async for e in stream]


def stored_calls(store, run_id: str):
    return [e for e in map(parse_event, store.get_events(run_id)) if e.type == "model_call"]


def test_model_calls_read_back_whole_and_the_trace_grows_linearly(store, raw_sql):
    results = chat(store, 12)
    for result in (results[0], results[5], results[-1]):
        live = [e for e in result.events if e.type == "model_call"]
        assert stored_calls(store, result.run_id) == live  # every message, in order, as the model got them
    last = stored_calls(store, results[-1].run_id)[0]
    assert sum(LONG in m["content"] for m in last.messages) == 23  # 11 turns' questions and answers, and its own

    sizes = [raw_sql("SELECT sum(length(data)) FROM events WHERE run_id = ?", (r.run_id,))[0][0] for r in results]
    # Stored whole, the twelfth run's trace held twelve times the first one's messages.
    assert max(sizes) < 1.5 * sizes[0], sizes


def test_a_tool_loop_and_a_replay_of_a_late_turn(store):
    results = chat(store, 3)
    model = ScriptedModel([{"tool_calls": [{"name": "echo", "arguments": {"text": "hi"}}]}, "Echoed."])
    [late] = chat(store, 1, results[-1].conversation_id, model=model)
    calls = stored_calls(store, late.run_id)
    assert len(calls) == 2 and calls == [e for e in late.events if e.type == "model_call"]
    assert calls[1].messages[-1] == {"role": "tool", "content": "hi", "tool_call_id": calls[1].messages[-2][
        "tool_calls"][0]["id"], "name": "echo"}

    # A replay feeds the stored prompts back and checks each call sends the same messages.
    events = asyncio.run(collect(replay(load_run(store, late.run_id))))
    assert events[-1].type == "run_finished" and events[-1].status == "ok" and events[-1].output == "Echoed."
    assert [e.messages for e in events if e.type == "model_call"] == [c.messages for c in calls]


def test_pruning_the_first_turns_keeps_the_later_turns_traces_whole(store):
    results = chat(store, 4)
    cutoff = store.get_run(results[2].run_id)["started"]
    assert store.prune_runs(cutoff) == 2
    for result in results[2:]:
        assert stored_calls(store, result.run_id) == [e for e in result.events if e.type == "model_call"]


def test_messages_added_while_a_run_answers_are_not_its_history(store):
    """An operator's message stored during a run comes after the run's history: the run's trace still shows the
    history it was given."""
    [first] = chat(store, 1)
    seen = []

    @tool
    def note(text: str) -> str:
        """Note something."""
        seen.append(store.append_message(first.conversation_id, "assistant", "an operator was here"))
        return "noted"

    spec = AgentSpec(name="chatty", model="scripted", instructions="Be brief.")
    model = ScriptedModel([{"tool_calls": [{"name": "note", "arguments": {"text": "a"}}]}, "Done."])
    second = run_sync(Agent.from_spec(spec, tools=[note]), "again", first.conversation_id, store=store,
                      model=model)
    assert seen == [2]
    calls = stored_calls(store, second.run_id)
    assert calls == [e for e in second.events if e.type == "model_call"]
    assert all("an operator was here" not in m.get("content", "") for c in calls for m in c.messages)


def test_a_follower_reads_only_the_events_after_its_last(store):
    """A follower of a run's stream (GET /v1/runs/ID/events) polls the store; it read the whole trace each time.
    ``get_events(run, after)`` gives only the later events, a late model call's history still whole."""
    results = chat(store, 3)
    run_id = results[-1].run_id
    whole = store.get_events(run_id)
    assert len(whole) > 2 and store.get_events(run_id, -1) == whole
    for after in range(-1, len(whole)):
        assert store.get_events(run_id, after) == [e for e in whole if e["seq"] > after]
    call = next(e for e in whole if e["type"] == "model_call")
    assert store.get_events(run_id, call["seq"] - 1)[0] == call  # its messages expanded, as in the whole read
    assert store.get_events(run_id, whole[-1]["seq"]) == []
