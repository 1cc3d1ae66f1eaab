"""A plugin's agent.yaml section (register_sections): written in agent.yaml, checked by its plugin, and never
named like a field of agent.yaml itself (it would take over every agent)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from halguru.errors import AgentSpecError
from tests.feedback_plugins import install, load, python_path

RELAY = '''
from halguru.agents.events import Token
from halguru.errors import AgentSpecError
from halguru.models.base import Message
from halguru.plugins import hookimpl


class RelayDriver:
    kind = "relay"
    timeout = 30.0

    def __init__(self, to):
        self.to = to

    def agents(self):
        return []

    def with_agents(self, replace):
        return self

    def timed_out(self):
        return "limited", "relay timed out"

    async def drive(self, ctx, agent, history, messages, outcome):
        outcome.output = f"relayed to {self.to}"
        messages.append(Message(role="assistant", content=outcome.output))
        yield Token(text=outcome.output)


def load(agent):
    value = agent.spec.section("relay")
    if not isinstance(value, dict) or set(value) != {"to"}:
        raise AgentSpecError("takes one key, to: AGENT")
    if value["to"] == "crash":
        raise KeyError("desk")
    if value["to"] == "nothing":
        return None
    return RelayDriver(value["to"])


def hijack(agent):
    raise RuntimeError(f"HIJACKED {agent.spec.name}")


@hookimpl
def register_sections(register):
    register("relay", load)
    register("metadata", hijack)
    register("team", hijack)
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return load(install(tmp_path / "site", "relay", "halguru_relay_plugin", RELAY), monkeypatch)


def relay_agent(write_agent, relay: str) -> Path:
    return write_agent(f"name: front\nmodel: scripted\nrelay: {relay}\n", name="front")


def test_a_plugin_section_in_agent_yaml_drives_the_agent(site, write_agent, halguru_cmd, subprocess_env) -> None:
    from halguru.agents.loader import load_agent

    folder = relay_agent(write_agent, "{to: desk}")
    assert load_agent(folder).driver.kind == "relay"  # was "relay: unknown field"
    env = {**subprocess_env, "PYTHONPATH": python_path(site)}
    run = subprocess.run([*halguru_cmd, "run", str(folder), "hi"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "relayed to desk" in run.stdout
    # metadata: is a field of every agent: the plugin's section of that name is refused, said once, naming it
    assert run.stderr.count("plugin 'relay': its section 'metadata' is not loaded") == 1, run.stderr
    # team: is halguru's own section: a plugin's of that name is left out, with a warning naming both
    assert ("plugin 'relay': its section 'team' is not loaded: plugin 'halguru.orchestration.plugin' registered "
            "one of that name first") in run.stderr
    plain = write_agent("name: plain\nmodel: scripted\nmetadata: {team: a}\n", name="plain")
    assert load_agent(plain).driver is None  # was run by the plugin's loader, which raised


@pytest.mark.parametrize(("relay", "said"), [
    ("{too: desk}", "agent.yaml:3: relay: takes one key, to: AGENT (plugin 'relay')"),
    ("{to: crash}", "agent.yaml:3: relay: plugin 'relay' failed to load agent front's section (KeyError: 'desk')"),
    ("{to: nothing}", "agent.yaml:3: relay: plugin 'relay' gave agent front a NoneType, not a driver"),
])
def test_the_plugin_checks_its_section_and_a_failure_is_one_line_naming_it(site, write_agent, relay: str,
                                                                           said: str) -> None:
    from halguru.agents.loader import load_agent

    with pytest.raises(AgentSpecError) as caught:
        load_agent(relay_agent(write_agent, relay))
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_a_section_no_loaded_plugin_claims_is_an_unknown_field(site, write_agent, monkeypatch) -> None:
    from halguru.agents.loader import load_agent
    from halguru.plugins.manager import reset_plugin_manager

    monkeypatch.setenv("HALGURU_LOAD_PLUGINS", "")
    reset_plugin_manager()
    with pytest.raises(AgentSpecError, match=r"agent\.yaml:3: relay: unknown field"):
        load_agent(relay_agent(write_agent, "{to: desk}"))
