"""One team run on the real bundled model: whatever the small model picks, the run ends bounded and traced."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru import load_agent, run_sync
from halguru.store import open_store

TEAM = Path(__file__).resolve().parents[2] / "agents-templates" / "team"


@pytest.mark.llama
def test_team_template_runs_on_the_bundled_model():
    agent = load_agent(TEAM)
    result = run_sync(agent, "How many sandwiches for 4 people eating 3 each? Hand this to the researcher.")
    assert result.status in ("ok", "limited"), result.error
    assert result.events[0].agent == "team" and result.events[-1].type == "run_finished"
    calls = [e for e in result.events if e.type == "model_call"]
    assert 1 <= len(calls) <= agent.team.settings.max_steps
    assert calls[0].tools == ["handoff_to_researcher", "handoff_to_writer"]
    for handoff in (e for e in result.events if e.type == "handoff"):
        assert handoff.to_agent in {"team", "researcher", "writer"}
    stored = open_store().get_run(result.run_id)
    assert stored["status"] == result.status and stored["agent"] == "team"
    if result.status == "ok":
        assert result.output.strip()
