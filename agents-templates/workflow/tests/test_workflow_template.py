"""Tests for the workflow template: its steps load, branch on the typed classification and reply."""

from pathlib import Path

from halguru import load_agent, run_sync
from halguru.models.scripted import ScriptedModel

PROJECT = Path(__file__).resolve().parents[1]


def scripted(classification: str, reply: str) -> ScriptedModel:
    """One scripted model for every step: the classifier answers first, then the writer."""
    return ScriptedModel([classification, reply])


def test_steps_load_in_order():
    workflow = load_agent(PROJECT).workflow
    assert list(workflow.steps) == ["classify", "has_order", "order", "reply"]
    assert workflow.needs["reply"] == ["order"]


def test_an_order_question_looks_the_order_up():
    result = run_sync(PROJECT, "Where is order 1001?", record=False,
                      model=scripted('{"category": "order", "order_id": 1001}', "It ships with DHL."))
    assert result.ok and result.output == "It ships with DHL."
    done = {e.step_id: e for e in result.events if e.type == "step_finished"}
    assert done["order"].output == {"order_id": 1001, "status": "shipped", "carrier": "DHL", "eta": "2 days"}
    writer_prompt = [e for e in result.events if e.type == "model_call"][-1].messages[-1]["content"]
    assert "(Order details: " in writer_prompt and '"carrier": "DHL"' in writer_prompt


def test_a_general_question_skips_the_lookup():
    result = run_sync(PROJECT, "Do you sell gift cards?", record=False,
                      model=scripted('{"category": "question", "order_id": 0}', "Yes, we do."))
    assert result.ok and result.output == "Yes, we do."
    done = {e.step_id: e for e in result.events if e.type == "step_finished"}
    assert done["order"].status == "skipped" and done["has_order"].output is False
    assert "(Order details: none)" in [e for e in result.events if e.type == "model_call"][-1].messages[-1]["content"]
