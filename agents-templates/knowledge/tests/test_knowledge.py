"""Tests for the knowledge agent: its documents ship with it and the agent runs."""

from pathlib import Path

from halguru import load_agent, run_sync
from halguru.models.scripted import ScriptedModel

PROJECT = Path(__file__).resolve().parents[1]


def test_knowledge_folder_ships_documents():
    agent = load_agent(PROJECT)
    assert agent.spec.knowledge == ["knowledge"]
    docs = sorted(p.name for p in (PROJECT / "knowledge").iterdir())
    assert docs == ["contact.txt", "menu.md", "opening-hours.md"]
    assert "closed on Mondays" in (PROJECT / "knowledge" / "opening-hours.md").read_text()


def test_answers_with_instructions_that_forbid_guessing():
    model = ScriptedModel(["The café is closed on Mondays."])
    result = run_sync(PROJECT, "Are you open on Monday?", model=model, record=False)
    assert result.ok
    assert "do not know" in model.requests[0].messages[0].content
