"""Tests for the team template: every member is a valid agent and runs."""

from pathlib import Path

import pytest

from halguru import load_agent, run_sync
from halguru.models.scripted import ScriptedModel

PROJECT = Path(__file__).resolve().parents[1]
MEMBERS = load_agent(PROJECT).spec.metadata["members"]


def test_lead_lists_its_members():
    assert MEMBERS == ["agents/researcher", "agents/writer"]


@pytest.mark.parametrize("member", MEMBERS)
def test_member_loads_and_answers(member):
    agent = load_agent(PROJECT / member)
    model = ScriptedModel([f"{agent.name} here."])
    result = run_sync(agent, "Plan a picnic", model=model, record=False)
    assert result.ok and result.output == f"{agent.name} here."


def test_researcher_can_use_the_calculator():
    model = ScriptedModel([
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "12*3"}}]},
        "- 36 sandwiches",
    ])
    result = run_sync(PROJECT / "agents/researcher", "12 people, 3 sandwiches each?", model=model, record=False)
    assert [e.content for e in result.events if e.type == "tool_result"] == ["36"]
