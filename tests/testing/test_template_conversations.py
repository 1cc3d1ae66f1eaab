"""Every template's conversation tests pass in replay (as in CI) and live on the bundled model."""

from __future__ import annotations

import json

import pytest

from halguru.scaffold import create_project, list_templates

TEMPLATES = ["assistant", "basic", "knowledge", "team", "workflow"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_ships_recorded_conversation_tests(template):
    path = next(t.path for t in list_templates() if t.name == template)
    assert (path / "tests" / "test_conversations.yaml").is_file()
    recording = json.loads((path / "tests" / "test_conversations.recording.json").read_text())
    # A workflow has no model of its own: its steps' models (smollm2) are recorded call by call.
    assert recording["model"] == ("workflow" if template == "workflow" else "smollm2") and recording["tests"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_conversations_replay(template, tmp_path, cli):
    project = create_project(f"my-{template}", template, tmp_path)
    data = json.loads(cli("test", str(project), "--replay", "--json").stdout)
    assert data["passed"] and all(r["mode"] == "replay" for r in data["results"])


@pytest.mark.llama
@pytest.mark.parametrize("template", TEMPLATES)
def test_template_conversations_live_on_the_bundled_model(template, tmp_path, cli):
    project = create_project(f"my-{template}", template, tmp_path)
    data = json.loads(cli("test", str(project), "--live", "--json").stdout)
    assert data["passed"], json.dumps(data, indent=1)[:3000]
    assert all(r["mode"] == "live" for r in data["results"])
