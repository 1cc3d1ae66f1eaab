"""Tests for the team template: the router and its two specialists load, route and answer."""

from pathlib import Path

import pytest

from halguru import load_agent, run_sync
from halguru.models.scripted import ScriptedModel

PROJECT = Path(__file__).resolve().parents[1]


def test_router_lists_its_specialists():
    team = load_agent(PROJECT).team
    assert sorted(team.members) == sorted([team.lead, "researcher", "writer"])
    tools = [t.name for t in team.members[team.lead].tool_specs]
    assert tools == ["handoff_to_researcher", "handoff_to_writer"]


@pytest.mark.parametrize("member", ["agents/researcher", "agents/writer"])
def test_member_loads_and_answers(member):
    agent = load_agent(PROJECT / member)
    model = ScriptedModel([f"{agent.name} here."])
    result = run_sync(agent, "Plan a picnic", model=model, record=False)
    assert result.ok and result.output == f"{agent.name} here."


def test_router_hands_off_and_the_researcher_uses_the_calculator():
    model = ScriptedModel([
        {"tool_calls": [{"name": "handoff_to_researcher", "arguments": {"reason": "needs a figure"}}]},
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "12*3"}}]},
        "- 36 sandwiches",
    ])
    result = run_sync(PROJECT, "12 people, 3 sandwiches each?", model=model, record=False)
    assert result.ok and result.output == "- 36 sandwiches"
    assert next(e.to_agent for e in result.events if e.type == "handoff") == "researcher"
    assert [e.content for e in result.events if e.type == "tool_result"][-1] == "36"


def test_saving_a_note_waits_for_approval(tmp_path, monkeypatch):
    from halguru.orchestration.approvals import approve, list_pending

    monkeypatch.chdir(tmp_path)  # save_note writes ./notes
    model = ScriptedModel([
        {"tool_calls": [{"name": "handoff_to_writer", "arguments": {"reason": "writing"}}]},
        {"tool_calls": [{"name": "save_note", "arguments": {"title": "Picnic plan", "text": "Bring bread."}}]},
    ])
    paused = run_sync(PROJECT, "Plan a picnic and save it", model=model)
    assert paused.status == "paused" and not (tmp_path / "notes").exists()
    (pending,) = list_pending()
    assert (pending["run_id"], pending["tool"]) == (paused.run_id, "save_note")
    done = approve(paused.run_id, model=ScriptedModel(["Saved your picnic plan."]))
    assert done.ok and done.output == "Saved your picnic plan."
    assert (tmp_path / "notes/picnic-plan.md").read_text() == "# Picnic plan\n\nBring bread.\n"
