"""Tests for the knowledge agent: its documents are retrieved, put in the prompt, and cited."""

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


def test_retrieves_the_right_document_and_cites_it():
    model = ScriptedModel(["The café is closed on Mondays [1]."])
    result = run_sync(PROJECT, "Are you open on Monday?", model=model, record=False)
    assert result.ok, result.error
    system = model.requests[0].messages[0].content
    assert "do not know" in system
    assert "closed on Mondays" in system  # the chunk that answers is in the prompt
    retrieval = next(e for e in result.events if e.type == "retrieval")
    assert retrieval.query == "Are you open on Monday?"
    assert retrieval.hits[0]["source"] == "knowledge/opening-hours.md"
    assert all("score" in hit for hit in retrieval.hits)
    assert "Sources:\n[1] knowledge/opening-hours.md#" in result.output
