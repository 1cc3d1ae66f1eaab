"""The OpenAI endpoint gives the same answer streamed and whole when a run has several steps."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import yaml


def team(root: Path, name: str) -> None:
    lead, billing = root / name, root / name / "agents/billing"
    billing.mkdir(parents=True)
    (root / f"{name}.yaml").write_text(yaml.safe_dump([
        {"text": "Passing you to billing. ", "tool_calls": [{"name": "handoff_to_billing", "arguments": {}}]},
        "unused"]))
    (lead / "agent.yaml").write_text(yaml.safe_dump({
        "name": name, "model": f"scripted:{root / f'{name}.yaml'}", "team": {"handoffs": ["agents/billing"]}}))
    (billing / "agent.yaml").write_text(yaml.safe_dump({"name": "billing", "model": "scripted"}))


@pytest.fixture
def oai(tmp_path: Path, api_key):
    from halguru_server import ServerSettings, create_app

    from tests.server.conftest import Server, free_port

    root = tmp_path / "agents"
    team(root, "desk_a")
    team(root, "desk_b")
    server = Server(create_app(ServerSettings(agents=[root / "desk_a", root / "desk_b"])), free_port()).start()
    yield openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_key(), max_retries=0)
    server.stop()


def test_streamed_and_whole_answers_agree_across_steps(oai) -> None:
    messages = [{"role": "user", "content": "my invoice"}]
    whole = oai.chat.completions.create(model="desk_a", messages=messages).choices[0].message.content
    chunks = list(oai.chat.completions.create(model="desk_b", messages=messages, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # the lead speaks, hands off, and billing (the echoing scripted model) answers
    assert streamed == whole == "Passing you to billing. You said: my invoice"


def test_response_format_on_a_team_is_a_400_not_ignored(oai) -> None:
    """A team's (or workflow's) run passes no schema to its agents: json_object was answered 200 with the free
    text 'Passing you to billing. You said: my invoice'."""
    messages = [{"role": "user", "content": "my invoice"}]
    for form in ({"type": "json_object"},
                 {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}):
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError) as refused:
                oai.chat.completions.create(model="desk_a", messages=messages, response_format=form, stream=stream)
            assert refused.value.body["param"] == "response_format"
            assert refused.value.body["message"].startswith("response_format: agent desk_a is a team, whose answer")
    assert oai.chat.completions.create(model="desk_a", messages=messages, response_format={"type": "text"}) \
        .choices[0].message.content == "Passing you to billing. You said: my invoice"
