"""A plugin's channel whose constructor raises something other than a HalguruError (the test channel's
``config["url"]`` without a url) is one line naming the agent, the channel and its plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from halguru.errors import HalguruError
from tests.feedback_plugins import load
from tests.jobs.hook_channel import install_hook_channel

SAID = "agent k1: channel 'hook' (plugin 'hook') failed to start: KeyError: 'url'"


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_agent) -> Path:
    load(install_hook_channel(tmp_path / "site"), monkeypatch)
    return write_agent("name: k1\nmodel: scripted\nchannels:\n  hook: {}\n", name="k1")


def test_validate_says_which_agent_channel_and_plugin(agent: Path) -> None:
    from halguru.agents.loader import check_project

    with pytest.raises(HalguruError) as caught:  # was a traceback ending KeyError: 'url'
        check_project(agent)
    assert str(caught.value) == f"{agent / 'agent.yaml'}:4: {SAID}"


def test_serve_s_worker_refuses_to_start_with_one_line(agent: Path) -> None:
    from halguru_server.agents import load_agents
    from halguru_server.worker import load_all_channels

    with pytest.raises(HalguruError) as caught:
        load_all_channels(load_agents([agent], "key"))
    assert str(caught.value) == SAID
