"""Every template scaffolds, validates, and its own tests pass in the created project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from halguru.agents.checks import validate_project
from halguru.scaffold import create_project, list_templates

TEMPLATES = ["assistant", "basic", "knowledge", "team", "workflow"]


def test_the_templates_ship_with_descriptions(cli):
    found = {t.name: t.description for t in list_templates()}
    assert sorted(found) == TEMPLATES
    assert all(len(d) > 20 for d in found.values())
    import json

    assert json.loads(cli("templates", "--json").stdout) == [{"name": n, "description": d} for n, d in found.items()]


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_project_validates_and_its_tests_pass(template, tmp_path, subprocess_env):
    project = create_project(f"my-{template}", template, tmp_path)
    agent = validate_project(project)
    assert agent.name == f"my-{template}"
    assert (project / "agent.schema.json").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project / "tests")],
        cwd=project, env=subprocess_env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
    # the Python tests ran in homes of their own: the user's holds at most the conversation tests' runs (marked
    # as such, as `halguru test` leaves them), no other run, approval or knowledge base
    home = Path(subprocess_env["HALGURU_HOME"])
    assert not (home / "knowledge").exists()
    if (home / "halguru.db").exists():
        from halguru.store import SQLiteStore

        store = SQLiteStore(home / "halguru.db")
        assert store.list_runs(test_runs=False) == [] and store.list_runs(status="paused") == []
        store.close()


def test_team_members_validate():
    team = next(t for t in list_templates() if t.name == "team")
    for member in ["agents/researcher", "agents/writer"]:
        validate_project(team.path / member)


def test_a_teams_tools_are_listed_as_its_lead_gets_them(tmp_path, cli):
    """`halguru tools TEAM` said "No tools." and `validate` "tools: none", while the lead's model is offered a
    handoff to each member."""
    import json

    project = create_project("crew", "team", tmp_path)
    rows = {r["name"]: r for r in json.loads(cli("tools", str(project), "--json").stdout)}
    assert {"handoff_to_researcher", "handoff_to_writer"} <= set(rows)
    assert rows["handoff_to_writer"]["source"] == "team" and "reason" in rows["handoff_to_writer"]["parameters"][
        "properties"]
    assert "tools: handoff_to_researcher, handoff_to_writer)" in cli("validate", str(project)).stdout


def test_a_misspelt_template_is_one_line_with_a_did_you_mean(cli_error, tmp_path):
    line = cli_error("new", "x", "-t", "asistant", "--dir", str(tmp_path))
    assert line == ("Error: unknown template 'asistant' (did you mean 'assistant'?); choose one of: assistant, "
                    "basic, knowledge, team, workflow")
    assert list(tmp_path.iterdir()) == []
