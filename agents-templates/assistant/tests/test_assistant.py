"""Tests for the assistant agent: its tools, and the tool loop with a scripted model."""

from pathlib import Path

from halguru import load_agent, run_sync
from halguru.models.scripted import ScriptedModel

PROJECT = Path(__file__).resolve().parents[1]


def test_tools_are_allowed_and_described():
    agent = load_agent(PROJECT)
    assert list(agent.tools) == ["calculator", "current_time", "word_count"]
    assert agent.tools["word_count"].parameters["required"] == ["text"]


def test_convert_temperature_is_defined_but_not_allowed():
    from halguru.agents.loader import load_project_tools

    own = load_project_tools(PROJECT / "tools.py")
    assert own["convert_temperature"](100, "C") == "100°C = 212.0°F"
    assert own["convert_temperature"](32, "F") == "32°F = 0.0°C"
    # not listed in agent.yaml's tools: the allow-list keeps it from the model
    assert "convert_temperature" not in load_agent(PROJECT).tools


def test_calculator_round_trip_through_the_runtime():
    model = ScriptedModel([
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "17*23"}}]},
        "17 × 23 = 391.",
    ])
    result = run_sync(PROJECT, "What is 17*23?", model=model, record=False)
    assert result.ok
    [tool_result] = [e for e in result.events if e.type == "tool_result"]
    assert tool_result.content == "391" and not tool_result.is_error
    # the model saw the tool result before answering
    assert model.requests[1].messages[-1].role == "tool"
    assert result.output == "17 × 23 = 391."


def test_bad_arguments_are_reported_to_the_model():
    model = ScriptedModel([
        {"tool_calls": [{"name": "word_count", "arguments": {"text": 42}}]},
        "Sorry, I could not convert that.",
    ])
    result = run_sync(PROJECT, "Count this", model=model, record=False)
    [tool_result] = [e for e in result.events if e.type == "tool_result"]
    assert tool_result.is_error and "text: Input should be a valid string" in tool_result.content
    assert result.ok
