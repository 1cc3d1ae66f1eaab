"""Tests for the basic agent. The scripted model makes them deterministic and instant."""

from pathlib import Path

from halguru import load_agent, run_sync
from halguru.models.scripted import ScriptedModel

PROJECT = Path(__file__).resolve().parents[1]


def test_agent_loads_without_tools():
    agent = load_agent(PROJECT)
    assert agent.tools == {}
    assert "concise" in agent.instructions


def test_answers_and_sends_the_instructions_first():
    model = ScriptedModel(["Hello! How can I help?"])
    result = run_sync(PROJECT, "Hi there", model=model, record=False)
    assert result.ok and result.output == "Hello! How can I help?"
    sent = model.requests[0].messages
    assert sent[0].role == "system" and "friendly" in sent[0].content
    assert sent[-1].content == "Hi there"
