"""Router/supervisor: specialists called as tools (agent-as-tool), and the team's tree in `halguru logs show`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from halguru import run_sync
from halguru.models.scripted import ScriptedModel


def ask(request: str) -> dict:
    return {"tool_calls": [{"name": "ask_tech", "arguments": {"request": request}}]}


def test_supervisor_composes_a_specialist_answer(team: Path):
    model = ScriptedModel([ask("Why is the wifi slow?"), "Restart the router.", "Tech says: restart the router."])
    result = run_sync(team, "Slow wifi", model=model)
    assert result.ok and result.output == "Tech says: restart the router."
    hand = [(e.from_agent, e.to_agent, e.reason) for e in result.events if e.type == "handoff"]
    assert hand == [("desk", "tech", "asked: Why is the wifi slow?"), ("tech", "desk", "answered")]
    tool_results = [e for e in result.events if e.type == "tool_result"]
    assert tool_results[0].content == "Restart the router."
    # The specialist saw only the request, with its own (empty) toolset; the answer is not streamed.
    assert model.requests[1].messages[-1].content == "Why is the wifi slow?" and model.requests[1].tools == []
    assert "".join(e.text for e in result.events if e.type == "token") == "Tech says: restart the router."
    assert result.events[-1].steps == 3  # the specialist's model call counts toward the run
    assert len({e.seq for e in result.events}) == len(result.events)  # one stream, one numbering


def test_failed_specialist_is_a_tool_error_for_the_lead(team: Path):
    model = ScriptedModel([ask("help"), {"error": "model crashed"}, "Sorry, tech is down."])
    result = run_sync(team, "x", model=model, record=False)
    assert result.ok and result.output == "Sorry, tech is down."
    error_result = next(e for e in result.events if e.type == "tool_result")
    assert error_result.is_error and "tech failed: model crashed" in error_result.content


def test_a_specialist_past_its_own_timeout_is_limited_as_past_its_max_steps(team: Path):
    """A member's own limits.timeout ends its sub-run limited, as its limits.max_steps does (and as the same agent
    run alone ends): the lead is told 'limited', not 'failed'."""
    tech = team / "agents/tech/agent.yaml"
    tech.write_text(tech.read_text() + "limits:\n  timeout: 0.2\n")
    slow = {"text": "one two three four five six", "token_delay": 0.1}
    result = run_sync(team, "x", model=ScriptedModel([ask("help"), slow, "Tech is slow today."]), record=False)
    assert result.ok and result.output == "Tech is slow today."
    back = [e.reason for e in result.events if e.type == "handoff" and e.from_agent == "tech"]
    assert back == ["limited"]
    error_result = next(e for e in result.events if e.type == "tool_result")
    assert error_result.is_error and "limits.timeout" in error_result.content


def test_logs_show_draws_the_tree_across_agents(team: Path, halguru_cmd, subprocess_env, tmp_path: Path):
    script = tmp_path / "script.yaml"
    script.write_text(json.dumps([
        {"tool_calls": [{"name": "handoff_to_billing", "arguments": {"reason": "money"}}]},
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "3*4"}}]},
        {"tool_calls": [{"name": "handoff_to_desk", "arguments": {}}]},
        ask("check the line"), "Line is fine.", "All good: 12 EUR, line fine."]))
    done = subprocess.run([*halguru_cmd, "run", str(team), "help", "--model", f"scripted:{script}", "--json"],
                          capture_output=True, text=True, env=subprocess_env, timeout=60)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["status"] == "ok" and events[-1]["output"] == "All good: 12 EUR, line fine."
    shown = subprocess.run([*halguru_cmd, "logs", "show", events[0]["run_id"]], capture_output=True, text=True,
                           env=subprocess_env, timeout=60)
    tree = shown.stdout
    assert shown.returncode == 0, shown.stderr
    order = ["step 1 · desk", "handoff desk → billing · money", "step 2 · billing", "tool_call calculator",
             "step 3 · billing", "handoff billing → desk", "step 4 · desk", "ask desk → tech · check the line",
             "handoff tech → desk · answered", "run_finished ok"]
    positions = [tree.index(label) for label in order]
    assert positions == sorted(positions), tree
    # The specialist's model call hangs under the ask node, deeper than the lead's.
    lines = tree.splitlines()
    ask_line = next(i for i, line in enumerate(lines) if "ask desk → tech" in line)
    indent = len(lines[ask_line]) - len(lines[ask_line].lstrip("│ "))
    child = lines[ask_line + 1]
    assert "model_call" in child and len(child) - len(child.lstrip("│ ")) > indent


def test_a_specialist_or_agent_step_whose_tool_needs_approval_is_refused_at_load(team: Path, tmp_path: Path,
                                                                                  cli_error) -> None:
    """Its call printed `⏸ ... waits for approval` with nothing to approve: `halguru runs pending` was empty, the
    specialist's answer an error and a workflow's step failed "paused". Both are refused at load, saying why."""
    tech = team / "agents/tech/agent.yaml"
    tech.write_text(tech.read_text() + "tools: [calculator]\napprovals: [calculator]\n")
    assert cli_error("validate", str(team)) == (
        f"Error: {team / 'agent.yaml'}:7: team.specialists.0: specialist 'tech' has approvals: [calculator], and a "
        "specialist cannot wait for a human; list it under handoffs instead (a handed-off conversation can)")
    flow = tmp_path / "flow"
    flow.mkdir()
    head = "name: flow\nworkflow:\n  steps:\n    - id: ask\n      agent: "
    (flow / "agent.yaml").write_text(f"{head}{team}/agents/tech\n")
    assert cli_error("validate", str(flow)) == (
        f"Error: {flow / 'agent.yaml'}:5: workflow.steps.0.agent: agent 'tech' has approvals: [calculator], and an "
        "agent step cannot wait for a human; make that call a tool step (the tool in this agent's tools: and "
        "approvals:)")
    # a team whose member has them
    (flow / "agent.yaml").write_text(f"{head}{team}/agents/billing\n    - id: desk\n      agent: {team}\n")
    specialists = (team / "agent.yaml").read_text().replace("  specialists: [agents/tech]\n", "")
    (team / "agent.yaml").write_text(specialists)
    assert cli_error("validate", str(flow)).startswith(
        f"Error: {flow / 'agent.yaml'}:7: workflow.steps.1.agent: agent 'tech' has approvals: [calculator]")
