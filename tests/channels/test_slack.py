"""The Slack channel end to end: `halguru serve --dev` (a real process) answers Events API requests signed with
slack_sdk's own ``SignatureVerifier``, and replies through a real HTTP stand-in for Slack's Web API.

A signed event -> serve checks the signature and queues the message once -> the in-process worker runs the
scripted agent (it echoes: "You said: ...") in the thread's conversation -> exactly one chat.postMessage reaches
the fake Slack, in the thread the message was in.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from halguru.channels.slack import SlackChannel
from halguru.errors import AgentSpecError
from tests.channels.fake_slack import FakeSlack
from tests.channels.serving import ended, get, helper_agent, history, jobs, serve_settings, serving, wait_for

TOKEN = "xoxb-1111-2222-" + "a" * 24
SECRET = "8f742231b10e8888abcd99aef56789d0"  # as Slack makes them: 32 hex digits
TEAM, BOT = "T0TEAM", "U0BOT"
ANN, BOB = "U0ANN", "U0BOB"
GENERAL = "C0GENERAL"
README = Path(__file__).resolve().parents[2] / "README.md"



@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    server = FakeSlack(TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def script() -> list[dict[str, Any]]:
    """The scripted model's replies before it echoes."""
    return []


@pytest.fixture
def options() -> dict[str, Any]:
    """More of the channel's settings (a test may add allow_from, answer, ...)."""
    return {}


@pytest.fixture
def serve(tmp_path: Path, fake: FakeSlack, script: list[dict[str, Any]], options: dict[str, Any],
          halguru_cmd: list[str], subprocess_env: dict[str, str]) -> Iterator[str]:
    """`halguru serve --dev` on a free port, serving agent `helper` with a Slack channel; its base URL."""
    folder = helper_agent(tmp_path, {"slack": {"bot_token": "HG_TEST_SLACK_TOKEN", "api_url": fake.url,
                                               "signing_secret": "HG_TEST_SLACK_SECRET", **options}}, script)
    config = serve_settings(tmp_path, job_delivery_backoff=0.2)
    secrets = {"HG_TEST_SLACK_TOKEN": TOKEN, "HG_TEST_SLACK_SECRET": SECRET}
    with serving(folder, config, halguru_cmd, {**subprocess_env, **secrets}) as url:
        yield url


def post(url: str, payload: dict[str, Any], secret: str = SECRET, age: int = 0, retry: int = 0,
         signature: str | None = None) -> httpx.Response:
    """POST as Slack does: the JSON body, signed (v0) over the timestamp and body with the signing secret."""
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()) - age)
    headers = {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
               "X-Slack-Signature": signature or SignatureVerifier(secret).generate_signature(timestamp=timestamp,
                                                                                             body=body) or ""}
    if retry:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return httpx.post(f"{url}/channels/slack/helper", content=body, timeout=10,
                      headers={name: value.encode("latin-1") for name, value in headers.items()})


def callback(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"token": "unused", "team_id": TEAM, "api_app_id": "A0APP", "event": event, "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": TEAM, "user_id": BOT, "is_bot": True,
                                "is_enterprise_install": False}]}


def mention(text: str, ts: str, user: str = ANN, channel: str = GENERAL, thread_ts: str | None = None,
            event_id: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT}> {text}", "ts": ts, "channel": channel,
             "event_ts": ts, "team": TEAM, "client_msg_id": str(uuid.uuid4())}
    return callback({**event, **({"thread_ts": thread_ts} if thread_ts else {})}, event_id)


def dm(text: str, ts: str, user: str = ANN, channel: str = "D0ANN", **more: Any) -> dict[str, Any]:
    return callback({"type": "message", "channel_type": "im", "user": user, "text": text, "ts": ts,
                     "channel": channel, "event_ts": ts, "team": TEAM, **more})


def test_the_request_url_check_is_answered_and_only_slack_gets_in(serve: str, fake: FakeSlack) -> None:
    """Slack checks the Request URL with a signed url_verification; a forged signature, another app's secret, a
    request signed over 5 minutes ago (replayed) or with a garbled timestamp is refused like a webhook that is not
    there, and nothing is stored."""
    check = post(serve, {"token": "unused", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                         "type": "url_verification"})
    assert (check.status_code, check.text) == (200, "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    message = mention("what's up?", "1700000000.000100")
    refused = [post(serve, message, secret="0" * 32), post(serve, message, age=301), post(serve, message, age=-400),
               post(serve, message, signature="v0=" + "0" * 64), post(serve, message, signature="v0=é"),
               httpx.post(f"{serve}/channels/slack/helper", json=message, timeout=10),
               httpx.post(f"{serve}/channels/slack/helper", json=message, timeout=10,
                          headers={"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=1"})]
    assert {(r.status_code, r.json()["error"]["message"]) for r in refused} == {
        (403, "the request has no valid signature for this webhook")}  # as /channels/slack/nobody answers
    nobody = httpx.post(f"{serve}/channels/slack/nobody", json=message, timeout=10)
    assert (nobody.status_code, nobody.json()) == (refused[0].status_code, refused[0].json())
    time.sleep(0.5)
    assert jobs(serve) == [] and get(serve, "/v1/conversations", agent="helper")["data"] == []
    assert fake.calls == 0


def test_a_mention_is_answered_once_in_its_thread_which_is_one_conversation(serve: str, fake: FakeSlack) -> None:
    root = "1700000000.000100"
    first = mention("What time do you open?", root, event_id="Ev0FIRST")
    answers = [post(serve, first), post(serve, first, retry=1), post(serve, first, retry=2)]  # Slack's retries
    assert [(a.status_code, a.text) for a in answers] == [(200, "")] * 3
    wait_for(lambda: len(fake.messages) >= 1, "the reply at Slack")
    assert [(m["channel"], m["thread_ts"], m["text"]) for m in fake.messages] == [
        (GENERAL, root, "You said: What time do you open?")]  # in the thread, the mention taken out
    # Bob is of another organization (a Slack Connect channel): his event's team is his own, the thread the same
    second = mention("And on Sunday?", "1700000000.000300", user=BOB, thread_ts=root)
    second["event"] |= {"team": "T0OTHER", "user_team": "T0OTHER"}
    assert post(serve, second).status_code == 200
    wait_for(lambda: len(fake.messages) >= 2, "the second reply")
    assert (fake.messages[1]["thread_ts"], fake.messages[1]["text"]) == (root, "You said: And on Sunday?")
    third = mention("new topic", "1700000000.000500")  # a new thread; the bot named as older payloads do
    third |= {"authorizations": {"bad": "shape"}, "authed_users": [BOT]}
    assert post(serve, third).status_code == 200
    wait_for(lambda: len(fake.messages) >= 3, "the third reply")
    assert fake.messages[2]["thread_ts"] == "1700000000.000500"
    # with message.channels subscribed: a thread that began with a mention goes on without one; another does not
    for ts, thread in (("1700000000.000700", root), ("1700000000.000800", "1700000000.000050")):
        reply = callback({"type": "message", "channel_type": "channel", "user": ANN, "text": "thanks!", "ts": ts,
                          "thread_ts": thread, "channel": GENERAL, "team": TEAM})
        assert post(serve, reply).status_code == 200
    wait_for(lambda: len(fake.messages) >= 4, "the follow-up's reply")
    wait_for(lambda: ended(serve), "the jobs to end")
    assert [j["status"] for j in jobs(serve)] == ["done"] * 4  # one job for the three deliveries of the first
    conversations = {c["title"]: c["id"] for c in get(serve, "/v1/conversations", agent="helper")["data"]}
    assert set(conversations) == {f"Slack <#{GENERAL}>: What time do you open?", f"Slack <#{GENERAL}>: new topic"}
    thread = conversations[f"Slack <#{GENERAL}>: What time do you open?"]
    assert history(serve, thread) == [("user", "What time do you open?"), ("assistant", "You said: What time do you "
                                      "open?"), ("user", "And on Sunday?"), ("assistant", "You said: And on Sunday?"),
                                     ("user", "thanks!"), ("assistant", "You said: thanks!")]
    detail = get(serve, f"/v1/admin/conversations/{thread}")  # the console's "On the channel"
    assert [(d["direction"], d["address"], d["status"]) for d in detail["deliveries"]] == [
        ("in", ANN, "received"), ("out", ANN, "sent"), ("in", BOB, "received"), ("out", BOB, "sent"),
        ("in", ANN, "received"), ("out", ANN, "sent")]
    time.sleep(0.5)
    assert len(fake.messages) == 4


@pytest.mark.parametrize("options", [{"answer": "all", "reply_in_thread": False}])
def test_answer_all_answers_channel_messages_once_and_reply_in_thread_false_answers_in_the_channel(
        serve: str, fake: FakeSlack) -> None:
    """With answer: all, a mention comes twice (app_mention and message, the same ts): answered once."""
    ts = "1700000001.000100"
    plain = callback({"type": "message", "channel_type": "channel", "user": ANN, "text": f"<@{BOT}> hello",
                      "ts": ts, "channel": GENERAL, "team": TEAM})
    assert post(serve, mention("hello", ts)).status_code == post(serve, plain).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1, "the reply")
    time.sleep(0.5)
    assert [(m["thread_ts"], m["text"]) for m in fake.messages] == [(None, "You said: hello")]
    assert len(jobs(serve)) == 1


def test_a_dm_is_answered_and_bots_edits_and_unmentioned_messages_are_not(serve: str, fake: FakeSlack) -> None:
    assert post(serve, dm("hello &lt;there&gt; &amp; you", "1700000002.000100")).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1, "the reply")
    # what the agent read was unescaped; what went to Slack is escaped again, so it cannot carry <!channel>
    assert [(m["channel"], m["thread_ts"], m["text"]) for m in fake.messages] == [
        ("D0ANN", None, "You said: hello &lt;there&gt; &amp; you")]
    ignored = [
        dm("You said: hello", "1700000002.000200", user=BOT, bot_id="B0BOT"),  # our own reply, as Slack echoes it
        dm("I am another bot", "1700000002.000300", user="U0OTHER", bot_id="B0OTHER"),
        callback({"type": "message", "subtype": "message_changed", "channel": "D0ANN", "channel_type": "im",
                  "ts": "1700000002.000400", "message": {"user": ANN, "text": "hello, edited", "ts": "1700000002.0001"},
                  "previous_message": {"user": ANN, "text": "hello"}}),
        dm("joined", "1700000002.000500", subtype="channel_join"),
        callback({"type": "message", "channel_type": "channel", "user": ANN, "text": "just chatting",
                  "ts": "1700000002.000600", "channel": GENERAL, "team": TEAM}),  # answer: mentions
        callback({"type": "reaction_added", "user": ANN, "reaction": "thumbsup", "event_ts": "1700000002.0007"}),
    ]
    assert [post(serve, event).status_code for event in ignored] == [200] * len(ignored)
    assert post(serve, dm("second", "1700000002.000800")).status_code == 200
    wait_for(lambda: len(fake.messages) >= 2, "the second reply")
    wait_for(lambda: ended(serve), "the jobs to end")
    time.sleep(0.5)
    assert [m["text"] for m in fake.messages] == ["You said: hello &lt;there&gt; &amp; you", "You said: second"]
    assert len(jobs(serve)) == 2
    [conversation] = get(serve, "/v1/conversations", agent="helper")["data"]  # the DM is one conversation
    assert conversation["title"] == "Slack DM: hello <there> & you"
    assert [text for role, text in history(serve, conversation["id"]) if role == "user"] == [
        "hello <there> & you", "second"]


@pytest.mark.parametrize("options", [{"allow_from": [ANN, "T0PARTNER"]}])
def test_allow_from_answers_only_the_users_and_workspaces_it_lists(serve: str, fake: FakeSlack) -> None:
    assert post(serve, dm("from bob", "1700000003.000100", user=BOB, channel="D0BOB")).status_code == 200
    partner = dm("from a partner", "1700000003.000200", user="U0PARTNER", channel="D0PARTNER")
    partner["event"]["team"] = "T0PARTNER"
    assert post(serve, partner).status_code == 200
    assert post(serve, dm("from ann", "1700000003.000300")).status_code == 200
    wait_for(lambda: len(fake.messages) >= 2, "two replies")
    wait_for(lambda: ended(serve), "the jobs to end")
    time.sleep(0.5)
    assert sorted((m["channel"], m["text"]) for m in fake.messages) == [
        ("D0ANN", "You said: from ann"), ("D0PARTNER", "You said: from a partner")]
    assert len(jobs(serve)) == 2  # nothing stored for Bob


def test_a_rate_limit_is_waited_out_and_the_answer_sent_once(serve: str, fake: FakeSlack) -> None:
    fake.failures = [(429, "ratelimited", {"Retry-After": "1"}), (503, "", {})]
    started = time.monotonic()
    assert post(serve, dm("hello", "1700000004.000100")).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1, "the reply")
    wait_for(lambda: ended(serve), "the job to end")
    time.sleep(0.5)
    assert [m["text"] for m in fake.messages] == ["You said: hello"] and fake.calls == 3
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    [job] = jobs(serve)
    assert (job["status"], job["attempts"]) == ("done", 2)  # the 503 was the job's retry


def test_a_reply_whose_answer_was_lost_is_found_not_posted_twice(serve: str, fake: FakeSlack) -> None:
    """Slack posted the reply and the connection dropped before its answer (as when a worker dies there): the
    job's next try finds it in the thread (or the DM) instead of posting it again."""
    fake.drop_next = 2
    assert post(serve, mention("hello", "1700000007.000100")).status_code == 200
    assert post(serve, dm("hi", "1700000007.000200")).status_code == 200
    wait_for(lambda: len(jobs(serve)) == 2 and ended(serve), "the jobs to end")
    time.sleep(0.5)
    assert sorted((m["channel"], m["thread_ts"], m["text"]) for m in fake.messages) == [
        (GENERAL, "1700000007.000100", "You said: hello"), ("D0ANN", None, "You said: hi")]
    assert sorted(fake.reads) == ["conversations.history", "conversations.replies"]
    assert [(j["status"], j["attempts"]) for j in jobs(serve)] == [("done", 2), ("done", 2)]


def test_an_operator_who_takes_a_thread_over_answers_in_it(serve: str, fake: FakeSlack) -> None:
    root = "1700000008.000100"
    assert post(serve, mention("hello", root)).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1, "the agent's reply")
    [conversation] = get(serve, "/v1/conversations", agent="helper")["data"]
    assert httpx.post(f"{serve}/v1/conversations/{conversation['id']}/takeover", timeout=10).status_code == 200
    assert post(serve, mention("a human, please", "1700000008.000200", thread_ts=root)).status_code == 200
    wait_for(lambda: ended(serve) and len(jobs(serve)) == 2, "the held message's job")
    answer = httpx.post(f"{serve}/v1/conversations/{conversation['id']}/reply", json={"text": "Ann here <!channel>"},
                        timeout=10)
    assert answer.status_code == 201, answer.text
    wait_for(lambda: len(fake.messages) >= 2, "the operator's answer")
    assert [(m["thread_ts"], m["text"]) for m in fake.messages] == [
        (root, "You said: hello"), (root, "Ann here &lt;!channel&gt;")]


def test_slack_refusing_the_answer_ends_the_job_with_why(serve: str, fake: FakeSlack) -> None:
    fake.failures = [(200, "not_in_channel", {})]
    assert post(serve, mention("hello", "1700000005.000100")).status_code == 200
    wait_for(lambda: ended(serve), "the job to end")
    [job] = jobs(serve)
    assert job["status"] == "dead" and job["attempts"] == 1 and fake.calls == 1 and fake.messages == []
    assert "not_in_channel: the app is not a member of the channel" in job["last_error"]
    [conversation] = get(serve, "/v1/conversations", agent="helper")["data"]
    [delivery] = get(serve, f"/v1/admin/conversations/{conversation['id']}")["deliveries"]
    assert delivery["status"] == "answer not sent" and "not_in_channel" in delivery["error"]


LONG = "\n\n".join(f"Paragraph {i}: " + "word " * 180 for i in range(12))  # ~11,000 characters


@pytest.mark.parametrize("script", [[{"text": LONG}]])
def test_a_long_answer_goes_as_several_messages_in_order(serve: str, fake: FakeSlack) -> None:
    assert post(serve, mention("tell me everything", "1700000006.000100")).status_code == 200
    wait_for(lambda: ended(serve) and len(jobs(serve)) == 1, "the job to end")
    assert len(fake.messages) == 3 and all(len(m["text"]) <= 4000 for m in fake.messages)
    assert {m["thread_ts"] for m in fake.messages} == {"1700000006.000100"}
    assert " ".join(" ".join(m["text"].split()) for m in fake.messages) == " ".join(LONG.split())


def test_fifty_events_from_ten_users_at_once_are_each_answered_once_in_order(serve: str, fake: FakeSlack) -> None:
    def user(index: int) -> None:
        for turn in range(5):  # each user's five in order, the ten users at once (each retried once)
            message = dm(f"user {index} message {turn}", f"17000001{index:02d}.{turn:06d}", user=f"U0USER{index}",
                         channel=f"D0USER{index}")
            assert post(serve, message).status_code == 200
            assert post(serve, message, retry=1).status_code == 200

    threads = [threading.Thread(target=user, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: len(fake.messages) >= 50, "fifty replies", timeout=120)
    wait_for(lambda: ended(serve), "the jobs to end")
    time.sleep(0.5)
    assert len(fake.messages) == 50 and len(jobs(serve)) == 50
    for index in range(10):
        assert [m["text"] for m in fake.messages if m["channel"] == f"D0USER{index}"] == [
            f"You said: user {index} message {turn}" for turn in range(5)]
    assert len(get(serve, "/v1/conversations", agent="helper", limit=100)["data"]) == 10


# -- settings, without a server --------------------------------------------------------------------------------
def test_settings_and_missing_secrets_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HG_TEST_SLACK_TOKEN", TOKEN)
    monkeypatch.setenv("HG_TEST_SLACK_SECRET", SECRET)
    good = {"bot_token": "HG_TEST_SLACK_TOKEN", "signing_secret": "HG_TEST_SLACK_SECRET"}
    cases = {
        "channels.slack.bot_token: names the secret that holds it": {**good, "bot_token": TOKEN},
        "channels.slack.signing_secret: names the secret": {**good, "signing_secret": SECRET},
        "channels.slack.allow_from: 'ann' is not a Slack user id": {**good, "allow_from": ["ann"]},
        "channels.slack.answer: Input should be 'mentions' or 'all'": {**good, "answer": "everything"},
        "channels.slack.api_url: must be an http(s) URL": {**good, "api_url": "slack.com/api"},
        "channels.slack.reply_in_threads: unknown field": {**good, "reply_in_threads": True},
        "channels.slack.signing_secret: required field is missing": {"bot_token": "HG_TEST_SLACK_TOKEN"},
        "channels.slack.signing_secret: the secret HG_TEST_NOT_SET is not set; export HG_TEST_NOT_SET=<signing "
        "secret> or run `keyring set halguru HG_TEST_NOT_SET`": {**good, "signing_secret": "HG_TEST_NOT_SET"},
    }
    for expected, config in cases.items():
        with pytest.raises(AgentSpecError) as caught:
            SlackChannel("helper", config, tmp_path)
        assert str(caught.value).startswith(f"agent helper: {expected}") and "\n" not in str(caught.value)
    assert SlackChannel("helper", {**good, "api_url": "https://slack-gov.com/api/"}, tmp_path).config.api_url == \
        "https://slack-gov.com/api"


def test_the_readme_slack_section_validates_as_written(tmp_path: Path, halguru_cmd: list[str],
                                                       subprocess_env: dict[str, str]) -> None:
    """The README's agent.yaml for Slack is what `halguru validate` takes, once its secrets are set; without them,
    one line says which and how to set it."""
    section = README.read_text().split("#### Slack", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    agent = tmp_path / "helper"
    agent.mkdir()
    (agent / "agent.yaml").write_text("name: helper\nmodel: scripted\ninstructions: Help.\n" + block.group(1))
    names = re.findall(r"(?:bot_token|signing_secret): (\w+)", block.group(1))
    assert names == ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]
    env = {k: v for k, v in subprocess_env.items() if not k.startswith("SLACK_")}
    missing = subprocess.run([*halguru_cmd, "validate", str(agent)], env=env, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr + missing.stdout
    assert "the secret SLACK_BOT_TOKEN is not set; export SLACK_BOT_TOKEN=" in missing.stdout + missing.stderr
    ok = subprocess.run([*halguru_cmd, "validate", str(agent)], capture_output=True, text=True, timeout=60,
                        env={**env, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET})
    assert ok.returncode == 0, ok.stdout + ok.stderr
