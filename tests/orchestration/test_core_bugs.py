"""Bugs that came from orchestration woven into the runtime; each test failed before the reshape."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import yaml

from halguru.agents.events import ModelCall, ToolResult
from halguru.agents.hooks import BreakpointHooks, Pause
from halguru.agents.replay import load_run, replay
from halguru.agents.runtime import collect_result, run, run_sync
from halguru.store import open_store
from tests.orchestration.conftest import write


def script(path: Path, replies: list) -> str:
    path.write_text(yaml.safe_dump(replies), encoding="utf-8")
    return f"scripted:{path}"


def ask(request: str) -> dict:
    return {"tool_calls": [{"name": "ask_tech", "arguments": {"request": request}}]}


def team_with(tmp_path: Path, lead: list, tech: list, team_extra: str = "") -> Path:
    root = write(tmp_path / "desk", f"""\
name: desk
model: {script(tmp_path / 'lead.yaml', lead)}
team:
  handoffs: [agents/billing]
  specialists: [agents/tech]
{team_extra}""")
    write(root / "agents/billing", f"name: billing\nmodel: {script(tmp_path / 'billing.yaml', ['Billing here.'])}\n")
    write(root / "agents/tech", f"name: tech\nmodel: {script(tmp_path / 'tech.yaml', tech)}\n")
    return root


def test_team_timeout_holds_while_a_specialist_runs(tmp_path: Path):
    # ~10 s of specialist: a bound far below it leaves a slow machine seconds to load the team and open the store
    slow = {"text": " ".join(["word"] * 100), "token_delay": 0.1}
    team = team_with(tmp_path, [ask("dig"), "done"], [slow], "  timeout: 0.5\n")
    started = time.perf_counter()
    result = run_sync(team, "help")
    elapsed = time.perf_counter() - started
    assert result.status == "limited", result.error
    assert "team.timeout (0.5s)" in (result.error or "")
    assert elapsed < 5.0, f"the run went on for {elapsed:.1f}s past its 0.5 s team timeout"


def test_successful_team_tools_are_not_errors(tmp_path: Path):
    lead = [{"tool_calls": [{"name": "ask_tech", "arguments": {"request": "check"}}]},
            {"tool_calls": [{"name": "handoff_to_billing", "arguments": {"reason": "money"}}]}]
    team = team_with(tmp_path, lead, ["Line is fine."])
    result = run_sync(team, "help")
    assert result.ok and result.output == "Billing here."
    results = {e.name: e for e in result.events if isinstance(e, ToolResult)}
    assert results["ask_tech"].content == "Line is fine." and not results["ask_tech"].is_error
    assert results["handoff_to_billing"].content == "The conversation is now with billing."
    assert not results["handoff_to_billing"].is_error
    stored = [e for e in open_store().get_events(result.run_id) if e["type"] == "tool_result"]
    assert [e["is_error"] for e in stored] == [False, False]


def test_breakpoints_stop_inside_specialists_and_workflow_steps(tmp_path: Path):
    team = team_with(tmp_path, [ask("dig"), "Tech says fine."], ["fine"])
    paused: list[Pause] = []

    def on_pause(pause: Pause) -> None:
        paused.append(pause)
        pause.resume()

    hooks = BreakpointHooks(on_pause, models=True)
    result = asyncio.run(collect_result(run(team, "help", hooks=hooks)))
    assert result.ok
    calls = [e for e in result.events if isinstance(e, ModelCall)]
    assert len(paused) == len(calls) == 3  # the lead twice, the specialist once
    inner = [e for e in calls if e.parent_run_id]
    assert len(inner) == 1 and inner[0].parent_run_id == result.run_id and inner[0].run_id != result.run_id

    root = write(tmp_path / "flow", """\
name: flow
workflow:
  steps:
    - {id: a, agent: ../agents/one}
""")
    write(tmp_path / "agents/one", f"name: one\nmodel: {script(tmp_path / 'one.yaml', ['step answer'])}\n")
    paused.clear()
    result = asyncio.run(collect_result(run(root, "go", hooks=BreakpointHooks(on_pause, models=True))))
    assert result.ok and result.output == "step answer"
    assert [p.kind for p in paused] == ["model_call"]


def test_replaying_a_team_run_gives_the_recorded_answer(tmp_path: Path):
    team = team_with(tmp_path, [ask("dig"), "Tech says: restart it."], ["Restart the router."])
    original = run_sync(team, "slow wifi")
    assert original.ok
    replayed = asyncio.run(collect_result(replay(load_run(open_store(), original.run_id))))
    assert replayed.ok, replayed.error
    assert replayed.output == original.output == "Tech says: restart it."


def test_deleting_a_conversation_with_team_workflow_and_paused_runs(tmp_path: Path):
    team = team_with(tmp_path, [ask("dig"), "ok"], ["fine"])
    store = open_store()
    first = run_sync(team, "help")
    add = {"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]}
    approvals = write(tmp_path / "careful", f"""\
name: careful
model: {script(tmp_path / 'careful.yaml', [add])}
tools: [calculator]
approvals: [calculator]
""")
    paused = run_sync(approvals, "add")
    assert paused.status == "paused"
    for conversation in (first.conversation_id, paused.conversation_id):
        store.delete_conversation(conversation)
        assert store.get_conversation(conversation) is None
    assert store.list_runs(conversation_id=first.conversation_id) == []


def test_deleting_a_conversation_while_its_run_streams(tmp_path: Path):
    slow = tmp_path / "slow.yaml"
    slow.write_text(json.dumps([{"text": " ".join(["w"] * 20), "token_delay": 0.02}]))
    agent = write(tmp_path / "slow", f"name: slow\nmodel: scripted:{slow}\n")
    store = open_store()

    async def main() -> list:
        events = []
        async for event in run(agent, "hi"):
            events.append(event)
            if len(events) == 4:  # streaming now
                store.delete_conversation(events[0].conversation_id)
        return events

    events = asyncio.run(main())
    assert events[-1].type == "run_finished" and events[-1].status == "ok"
    assert store.get_conversation(events[0].conversation_id) is None


def test_misspelled_team_and_workflow_references_get_a_suggestion(tmp_path: Path):
    from halguru.agents.loader import load_agent
    from halguru.errors import AgentSpecError

    root = write(tmp_path / "desk", "name: desk\nmodel: scripted\nteam:\n  handoffs: [agents/biling]\n")
    write(root / "agents/billing", "name: billing\nmodel: scripted\n")
    # the suggestion is the reference as it is written (it said 'billing': no folder from desk/)
    with pytest.raises(AgentSpecError, match=r"unknown agent 'agents/biling' \(did you mean 'agents/billing'\?\)"):
        load_agent(root)
    (root / "agent.yaml").write_text("name: desk\nmodel: scripted\nteam:\n  handoffs: [agents/biling/]\n")
    with pytest.raises(AgentSpecError, match=r"unknown agent 'agents/biling/' \(did you mean 'agents/billing'\?\)"):
        load_agent(root)
    step = write(tmp_path / "steps", "name: steps\nworkflow:\n  steps:\n    - {id: a, agent: ../desk/agents/bill}\n")
    with pytest.raises(AgentSpecError, match=r"unknown agent '../desk/agents/bill' \(did you mean "
                                             r"'../desk/agents/billing'\?\)"):
        load_agent(step)
    flow = write(tmp_path / "flow", """\
name: flow
tools: [calculator]
workflow:
  steps:
    - {id: first, tool: calculater, args: {expression: "1+1"}}
    - {id: second, tool: calculator, args: {expression: "2+2"}, needs: [frist]}
""")
    with pytest.raises(AgentSpecError, match=r"'calculater' is not one of this agent's tools \(did you mean "
                                             r"'calculator'\?\)"):
        load_agent(flow)
    (flow / "agent.yaml").write_text((flow / "agent.yaml").read_text().replace("calculater", "calculator"))
    with pytest.raises(AgentSpecError, match=r"unknown step 'frist' \(did you mean 'first'\?\)"):
        load_agent(flow)


def _lines(events: list) -> list[str]:
    from halguru.agents.replay import event_line

    # A replay is not stored, so it saves (and reports) no checkpoints; everything else comes back.
    return [event_line(e) for e in events if e.type not in ("token", "checkpoint")]


def test_team_and_workflow_replays_reproduce_the_run_event_for_event(tmp_path: Path):
    team = team_with(tmp_path, [ask("dig"), {"tool_calls": [{"name": "handoff_to_billing", "arguments": {}}]}],
                     ["Restart the router."])
    original = run_sync(team, "slow wifi")
    assert original.ok
    stored = load_run(open_store(), original.run_id)
    replayed = asyncio.run(collect_result(replay(stored)))
    assert replayed.ok and replayed.output == original.output
    assert _lines(replayed.events)[1:] == _lines(original.events)[1:]  # run_started differs by its metadata only
    assert any(e.parent_run_id for e in replayed.events)  # the specialist's sub-run was re-run

    flow = write(tmp_path / "flow", """\
name: flow
tools: [calculator]
workflow:
  steps:
    - {id: a, agent: ../agents/one, needs: []}
    - {id: b, agent: ../agents/two, needs: []}
    - {id: sum, tool: calculator, args: {expression: "1+2"}, needs: [a, b]}
""")
    write(tmp_path / "agents/one", f"name: one\nmodel: {script(tmp_path / 'one.yaml', ['first answer'])}\n")
    write(tmp_path / "agents/two", f"name: two\nmodel: {script(tmp_path / 'two.yaml', ['second answer'])}\n")
    original = run_sync(flow, "go")
    assert original.ok and original.output == "3"
    replayed = asyncio.run(collect_result(replay(load_run(open_store(), original.run_id))))
    assert replayed.ok and replayed.output == "3"
    assert sorted(_lines(replayed.events)[1:]) == sorted(_lines(original.events)[1:])  # parallel steps: any order


def test_a_workflow_step_tried_again_replays_each_try(tmp_path: Path):
    """A step with ``retries:`` calls its tool more than once under one call id: the replay fed every try the last
    recorded result, so the failed try came back a success and the replay told another story than the run."""
    tries = tmp_path / "tries"
    flow = write(tmp_path / "flow", "name: flow\ntools: [ship]\nworkflow:\n  steps:\n"
                 "    - {id: send, tool: ship, args: {order: A-7}, retries: 1, retry_delay: 0.01}\n")
    (flow / "tools.py").write_text(
        "from pathlib import Path\nfrom halguru import tool\n\n@tool\ndef ship(order: str) -> str:\n"
        "    \"Ship it; the carrier fails once.\"\n"
        f"    marker = Path({str(tries)!r})\n    if not marker.exists():\n        marker.touch()\n"
        "        raise ConnectionError('carrier down')\n    return f'shipped {order}'\n")
    original = run_sync(flow, "go")
    assert original.ok and [e.is_error for e in original.events if isinstance(e, ToolResult)] == [True, False]
    replayed = asyncio.run(collect_result(replay(load_run(open_store(), original.run_id))))
    assert replayed.ok and replayed.output == "shipped A-7"
    assert _lines(replayed.events)[1:] == _lines(original.events)[1:]
