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
    from halguru.agents.checks import check_project

    with pytest.raises(HalguruError) as caught:  # was a traceback ending KeyError: 'url'
        check_project(agent)
    assert str(caught.value) == f"{agent / 'agent.yaml'}:4: {SAID}"


def test_serve_s_worker_refuses_to_start_with_one_line(agent: Path) -> None:
    from halguru_server.agents import load_agents
    from halguru_server.worker import load_all_channels

    with pytest.raises(HalguruError) as caught:
        load_all_channels(load_agents([agent], "key"))
    assert str(caught.value) == SAID


ODD = '''
import json
from halguru.channels.base import Inbound, WebhookResponse
from halguru.plugins import hookimpl


class NoName:  # what docs/plugins.md shows a channel needs, without the protocol's `name` class attribute
    def __init__(self, agent, config, folder):
        self.agent = agent

    async def webhook(self, request, sink):
        return WebhookResponse(200, "got it")

    async def send(self, message, once):
        return []


class NoSend:
    def __init__(self, agent, config, folder):
        pass

    async def webhook(self, request, sink):
        return WebhookResponse(200, "got it")


class Crashing(NoName):
    async def webhook(self, request, sink):
        return json.loads(request.body)["text"]  # a body not JSON: JSONDecodeError; JSON: a str, not a response


class Stray(NoName):
    async def webhook(self, request, sink):  # the agent's name mistyped: a reply queued that no worker ran
        sink.accept(Inbound(channel="stray", agent="k5-typo", message_id="m1", sender="ann", thread="ann",
                            text="hello"))
        return WebhookResponse(200, "got it")


@hookimpl
def register_channels(register):
    register("crashing", Crashing)
    register("stray", Stray)
    register("noname", NoName)
    register("nosend", NoSend)
    register("garbage", lambda agent, config, folder: 42)
'''


@pytest.fixture
def odd_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from tests.feedback_plugins import install

    return load(install(tmp_path / "site", "odd", "halguru_odd_channels", ODD), monkeypatch)


@pytest.mark.parametrize(("channel", "said"), [
    ("nosend", "agent k2: channel 'nosend' (plugin 'odd') is not a channel: it has no send(message, once)"),
    ("garbage", "agent k2: channel 'garbage' (plugin 'odd') is not a channel: it gave an int, which has no "
                "send(message, once)"),
])
def test_a_channel_lacking_what_a_channel_has_is_one_line_at_validate(odd_site, write_agent, channel: str,
                                                                     said: str) -> None:
    """`halguru validate` said OK, and serve then refused every message to it with 403 (or failed at the reply)."""
    from halguru.agents.checks import check_project

    agent = write_agent(f"name: k2\nmodel: scripted\nchannels:\n  {channel}: {{}}\n", name="k2")
    with pytest.raises(HalguruError) as caught:
        check_project(agent)
    assert str(caught.value) == f"{agent / 'agent.yaml'}:4: {said}"


def test_a_channel_class_without_a_name_attribute_gets_its_webhook(odd_site, write_agent) -> None:
    """The class docs/plugins.md describes, without `name = "noname"`: every POST to its webhook was 403 'no such
    webhook' (isinstance against the Channel protocol wanted a `name`), with no word at start-up."""
    from fastapi.testclient import TestClient
    from halguru_server import ServerSettings, create_app

    agent = write_agent("name: k3\nmodel: scripted\nchannels:\n  noname: {}\n", name="k3")
    with TestClient(create_app(ServerSettings(agents=[agent]))) as client:
        answer = client.post("/channels/noname/k3", content=b"{}")
    assert (answer.status_code, answer.text) == (200, "got it")


@pytest.mark.parametrize(("body", "why"), [
    (b"not json", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
    (b'{"text": "hi"}', "it gave a str, not a WebhookResponse"),
])
def test_a_plugin_webhook_that_fails_is_one_log_line_naming_its_plugin(odd_site, write_agent, caplog, body: bytes,
                                                                       why: str) -> None:
    """A webhook raising (or answering a str) was logged as 'unhandled error on /channels/crashing/k4' with
    uvicorn's second traceback, naming neither the channel's plugin nor the agent."""
    import logging

    from fastapi.testclient import TestClient
    from halguru_server import ServerSettings, create_app

    agent = write_agent("name: k4\nmodel: scripted\nchannels:\n  crashing: {}\n", name="k4")
    with TestClient(create_app(ServerSettings(agents=[agent]))) as client, caplog.at_level(logging.ERROR):
        answer = client.post("/channels/crashing/k4", content=body)
    assert answer.status_code == 500
    assert answer.json() == {"error": {"type": "internal", "message": "the channel's webhook failed; see the "
                                                                      "server log"}}
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert said == [f"channel 'crashing' (plugin 'odd') failed on a webhook request for agent k4: {why}"]


def test_a_message_a_channel_hands_over_for_another_agent_is_refused(odd_site, write_agent, caplog) -> None:
    """A webhook's Inbound naming another agent than its own was stored and queued (answered 200): a reply job for
    an agent no worker serves, 'queued' for ever in `halguru jobs list`, and the sender never answered."""
    import logging

    from fastapi.testclient import TestClient
    from halguru_server import ServerSettings, create_app

    agent = write_agent("name: k5\nmodel: scripted\nchannels:\n  stray: {}\n", name="k5")
    app = create_app(ServerSettings(agents=[agent]))
    with TestClient(app) as client, caplog.at_level(logging.ERROR):
        answer = client.post("/channels/stray/k5", content=b"hello")
        jobs = app.state.halguru.store.list_jobs()
    assert answer.status_code == 500 and jobs == []
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert said == ["channel 'stray' (plugin 'odd') failed on a webhook request for agent k5: HalguruError: the "
                    "channel 'stray' of agent k5 handed over a message for channel 'stray' of agent 'k5-typo': an "
                    "Inbound's channel and agent are the channel's own (its registered name, the agent it was made "
                    "for)"]
