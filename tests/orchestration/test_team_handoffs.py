"""Handoffs, team guards and loop detection, with the scripted model (one model shared by the team)."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru import load_agent, run_sync
from halguru.errors import AgentSpecError
from halguru.models.scripted import ScriptedModel
from halguru.store import open_store


def handoff(to: str, reason: str = "") -> dict:
    return {"tool_calls": [{"name": f"handoff_to_{to}", "arguments": {"reason": reason}}]}


def test_plain_agent_has_no_team(write_agent):
    agent = load_agent(write_agent("name: solo\nmodel: scripted\n"))
    assert agent.team is None
    result = run_sync(agent, "hi", record=False)
    assert result.ok and not [e for e in result.events if e.type == "handoff"]


def test_team_tools_and_automatic_hand_back(team: Path):
    agent = load_agent(team)
    members = agent.team.members
    assert set(members) == {"desk", "billing", "tech"}
    assert [t.name for t in members["desk"].tool_specs] == ["handoff_to_billing", "handoff_to_tech", "ask_tech"]
    assert [t.name for t in members["billing"].tool_specs] == ["calculator", "handoff_to_desk"]
    assert "Invoices and refunds." in members["desk"].tool_specs[0].description


def test_handoff_moves_the_conversation_until_handed_back(team: Path):
    model = ScriptedModel([
        handoff("billing", "refund question"),
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "2*20"}}]},
        "Your refund is 40 EUR.",
        "Anything else on billing?",          # turn 2 goes straight to billing
        handoff("desk", "not billing"),        # turn 3: billing hands back
        "Desk here.",
    ])
    first = run_sync(team, "Refund for 2 tickets at 20?", model=model)
    assert first.ok and first.output == "Your refund is 40 EUR."
    hand = [e for e in first.events if e.type == "handoff"]
    assert [(h.from_agent, h.to_agent, h.reason) for h in hand] == [("desk", "billing", "refund question")]
    # The billing agent got its own prompt and tools after the handoff.
    assert [t.name for t in model.requests[1].tools] == ["calculator", "handoff_to_desk"]
    store = open_store()
    assert store.get_conversation(first.conversation_id)["active_agent"] == "billing"
    assert store.get_run(first.run_id)["agent"] == "desk"

    second = run_sync(team, "And the invoice?", first.conversation_id, model=model)
    assert second.output == "Anything else on billing?"
    assert [t.name for t in model.requests[3].tools] == ["calculator", "handoff_to_desk"]
    third = run_sync(team, "My wifi is broken", first.conversation_id, model=model)
    assert third.output == "Desk here."
    assert store.get_conversation(first.conversation_id)["active_agent"] == "desk"
    assert next(t.name for t in model.requests[5].tools) == "handoff_to_billing"


def test_calls_after_a_handoff_in_the_same_reply_are_not_run(team: Path):
    model = ScriptedModel([
        {"tool_calls": [{"name": "handoff_to_billing", "arguments": {}},
                        {"name": "handoff_to_tech", "arguments": {}}]},
        "billing answers",
    ])
    result = run_sync(team, "x", model=model, record=False)
    results = [e for e in result.events if e.type == "tool_result"]
    assert results[1].is_error and "went to billing" in results[1].content
    assert result.output == "billing answers"


def test_an_unknown_tool_after_a_handoff_names_the_tools_that_member_was_offered(team: Path):
    """Billing, given `handoff_to_tech` (the desk's), was told only its own tools were available: not the
    handoff back to the desk it had been offered in that very call."""
    model = ScriptedModel([handoff("billing"), handoff("tech"), "billing answers"])
    result = run_sync(team, "x", model=model, record=False)
    [refused] = [e for e in result.events if e.type == "tool_result" and e.is_error]
    assert refused.content == "error: unknown tool 'handoff_to_tech'; available: calculator, handoff_to_desk"


def test_loop_detection_stops_ping_pong(team: Path):
    model = ScriptedModel([handoff("billing"), handoff("desk"), handoff("billing"), "never reached"])
    result = run_sync(team, "ping pong", model=model)
    assert result.status == "limited"
    assert "handoff loop detected: desk → billing → desk → billing" in result.error
    errors = [e for e in result.events if e.type == "error"]
    assert errors[-1].kind == "limit" and errors[-1].fatal
    assert open_store().get_run(result.run_id)["status"] == "limited"


def test_progress_between_handoffs_is_not_a_loop(team: Path):
    calc = {"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]}
    model = ScriptedModel([handoff("billing"), calc, handoff("desk"), handoff("billing"), "done"])
    result = run_sync(team, "x", model=model, record=False)
    assert result.ok and result.output == "done"


def test_max_handoffs(team: Path, tmp_path: Path):
    text = (team / "agent.yaml").read_text().replace("max_handoffs: 4", "max_handoffs: 1")
    (team / "agent.yaml").write_text(text)
    model = ScriptedModel([handoff("billing"), handoff("desk")])
    result = run_sync(team, "x", model=model, record=False)
    assert result.status == "limited" and "team.max_handoffs" in result.error


def test_max_steps_across_agents(team: Path):
    calc = {"tool_calls": [{"name": "calculator", "arguments": {"expression": "1+1"}}]}
    model = ScriptedModel([handoff("billing"), *[
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": f"{i}+1"}}]} for i in range(20)], calc])
    result = run_sync(team, "x", model=model, record=False)
    assert result.status == "limited"
    assert "limits.max_steps" in result.error or "team.max_steps" in result.error
    assert sum(e.type == "model_call" for e in result.events) <= 8


def test_max_tokens_across_agents(team: Path):
    text = (team / "agent.yaml").read_text().replace("max_steps: 8", "max_steps: 8\n  max_tokens: 30")
    (team / "agent.yaml").write_text(text)
    model = ScriptedModel([handoff("billing"), handoff("desk"), "x"])
    result = run_sync(team, "a long question " * 5, model=model, record=False)
    assert result.status == "limited" and "team.max_tokens" in result.error


def test_wall_time_limit(team: Path):
    text = (team / "agent.yaml").read_text().replace("max_steps: 8", "max_steps: 8\n  timeout: 0.2")
    (team / "agent.yaml").write_text(text)
    model = ScriptedModel([{"text": "slow " * 50, "token_delay": 0.02}])
    result = run_sync(team, "x", model=model, record=False)
    assert result.status == "limited" and "team.timeout" in result.error


@pytest.mark.parametrize(("edit", "where", "message"), [
    (lambda t: t.replace("agents/tech]\n  specialists", "agents/nope]\n  specialists"), "agent.yaml:6",
     "team.handoffs.1: unknown agent 'agents/nope'"),
    (lambda t: t.replace("specialists: [agents/tech]", "specialists: [agents/ghost]"), "agent.yaml:7",
     "team.specialists.0: unknown agent"),
    (lambda t: t.replace("[agents/billing, agents/tech]", "[agents/billing, .]"), "agent.yaml:6",
     "cannot name itself"),
])
def test_bad_references_are_rejected_at_load(team: Path, edit, where, message):
    (team / "agent.yaml").write_text(edit((team / "agent.yaml").read_text()))
    with pytest.raises(AgentSpecError) as exc:
        load_agent(team)
    assert f"{team / where}" in str(exc.value) and message in str(exc.value)


def test_handoff_cycles_are_rejected_at_load(team: Path):
    lead = team / "agent.yaml"
    lead.write_text(lead.read_text().replace("  specialists: [agents/tech]\n", ""))
    billing = team / "agents/billing/agent.yaml"
    billing.write_text(billing.read_text() + "team:\n  handoffs: [../tech]\n")
    (team / "agents/tech/agent.yaml").write_text(
        "name: tech\nmodel: scripted\nteam:\n  handoffs:\n    - ../billing\n")
    with pytest.raises(AgentSpecError) as exc:
        load_agent(team)
    text = str(exc.value)
    assert "cycle billing → tech → billing" in text
    assert text.startswith(f"{team / 'agents/tech/agent.yaml'}:5: team.handoffs")


def test_schema_covers_team(cli):
    import json

    schema = json.loads(cli("schema").output)
    team = schema["$defs"]["TeamSettings"]["properties"]
    assert {"handoffs", "specialists", "max_handoffs", "max_steps", "max_tokens", "timeout"} <= set(team)


def test_cli_load_error_is_one_line(team: Path, cli_error):
    text = (team / "agent.yaml").read_text().replace("agents/tech]\n  specialists", "agents/nope]\n  specialists")
    (team / "agent.yaml").write_text(text)
    line = cli_error("run", str(team), "hi")
    assert f"{team / 'agent.yaml'}:6: team.handoffs.1: unknown agent 'agents/nope'" in line
