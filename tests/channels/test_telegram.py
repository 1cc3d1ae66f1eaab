"""The Telegram channel end to end: `halguru serve --dev` (a real process) takes webhook updates carrying the
secret token, and replies through a real HTTP stand-in for Telegram's Bot API.

An update -> serve checks X-Telegram-Bot-Api-Secret-Token and queues the message once -> the in-process worker
runs the scripted agent (it echoes: "You said: ...") in the chat's conversation -> exactly one sendMessage reaches
the fake Bot API, in the chat (and forum topic) the message was in.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from halguru.channels.telegram import TelegramChannel
from halguru.errors import AgentSpecError
from tests.channels.fake_telegram import FakeTelegram
from tests.channels.serving import ended, get, helper_agent, history, jobs, serve_settings, serving, wait_for

TOKEN = "7000000001:AAH" + "x" * 32
BOT_ID = 7000000001
SECRET = "s3cr3t-webhook_token"
ANN, BOB = 111111, 222222
GROUP = -1001234567890
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram(TOKEN, "HelperBot").start()
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
def serve(tmp_path: Path, fake: FakeTelegram, script: list[dict[str, Any]], options: dict[str, Any],
          halguru_cmd: list[str], subprocess_env: dict[str, str]) -> Iterator[str]:
    """`halguru serve --dev` on a free port, serving agent `helper` with a Telegram channel; its base URL."""
    folder = helper_agent(tmp_path, {"telegram": {"bot_token": "HG_TEST_TG_TOKEN", "api_url": fake.url,
                                                  "secret_token": "HG_TEST_TG_SECRET", **options}}, script)
    config = serve_settings(tmp_path, job_delivery_backoff=0.2)
    secrets = {"HG_TEST_TG_TOKEN": TOKEN, "HG_TEST_TG_SECRET": SECRET}
    with serving(folder, config, halguru_cmd, {**subprocess_env, **secrets}) as url:
        yield url


_update_ids = iter(range(500_000, 10_000_000))


def post(url: str, update: dict[str, Any], secret: str | None = SECRET) -> httpx.Response:
    """POST as Telegram does: the update as JSON, the secret token in its header."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    return httpx.post(f"{url}/channels/telegram/helper", json=update, headers=headers, timeout=10)


def message(text: str | None, message_id: int, user: int = ANN, chat: int | None = None, username: str = "ann",
            **more: Any) -> dict[str, Any]:
    """An update with a message: in Ann's private chat unless ``chat`` (a group) is given."""
    sender = {"id": user, "is_bot": False, "first_name": username.title(), "username": username}
    where = {"id": user, "type": "private", "first_name": username.title()} if chat is None else {
        "id": chat, "type": "supergroup", "title": "Support group"}
    body = {"message_id": message_id, "from": sender, "chat": where, "date": int(time.time()),
            **({"text": text} if text is not None else {}), **more}
    return {"update_id": next(_update_ids), "message": body}


def conversations(url: str) -> dict[str, str]:
    return {c["title"]: c["id"] for c in get(url, "/v1/conversations", agent="helper", limit=100)["data"]}


def test_only_requests_with_the_secret_token_get_in(serve: str, fake: FakeTelegram) -> None:
    """No header, another secret, one that starts like it, or a non-ASCII one: refused like a webhook that is not
    there, and nothing is stored."""
    update = message("hello", 1)
    refused = [post(serve, update, secret=None), post(serve, update, secret="wrong"),
               post(serve, update, secret=SECRET[:-1]), post(serve, update, secret=SECRET + "x"),
               httpx.post(f"{serve}/channels/telegram/helper", json=update, timeout=10,
                          headers={b"X-Telegram-Bot-Api-Secret-Token": "é".encode("latin-1")})]
    assert {(r.status_code, r.json()["error"]["message"]) for r in refused} == {
        (403, "the request has no valid signature for this webhook")}
    nobody = httpx.post(f"{serve}/channels/telegram/nobody", json=update, timeout=10,
                        headers={"X-Telegram-Bot-Api-Secret-Token": SECRET})
    assert (nobody.status_code, nobody.json()) == (refused[0].status_code, refused[0].json())
    time.sleep(0.5)
    assert jobs(serve) == [] and get(serve, "/v1/conversations", agent="helper")["data"] == []
    assert fake.calls == []


def test_a_private_chat_is_one_conversation_each_message_answered_once(serve: str, fake: FakeTelegram) -> None:
    first = message("What time do you open?", 10)
    answers = [post(serve, first), post(serve, first), post(serve, first)]  # Telegram's retries of one update
    assert [(a.status_code, a.text) for a in answers] == [(200, "")] * 3
    wait_for(lambda: len(fake.messages) >= 1, "the reply at Telegram")
    assert fake.messages == [{"chat_id": ANN, "text": "You said: What time do you open?",
                              "link_preview_options": {"is_disabled": True}}]  # plain text: no parse_mode
    ignored = [
        {"update_id": next(_update_ids), "edited_message": {**first["message"], "text": "When do you open?",
                                                             "edit_date": int(time.time())}},
        message("I am a bot", 11, user=333, username="otherbot"),
        {"update_id": next(_update_ids), "channel_post": {"message_id": 5, "chat": {"id": -100999, "type": "channel"},
                                                          "date": 1, "text": "news"}},
        message(None, 12, new_chat_title="renamed"),  # a service message
        {"update_id": next(_update_ids), "callback_query": {"id": "1", "from": {"id": ANN, "is_bot": False}}},
    ]
    ignored[1]["message"]["from"]["is_bot"] = True
    assert [post(serve, update).status_code for update in ignored] == [200] * len(ignored)
    assert post(serve, message("*bold* <b>x</b>", 13)).status_code == 200
    wait_for(lambda: len(fake.messages) >= 2, "the second reply")
    wait_for(lambda: ended(serve), "the jobs to end")
    time.sleep(0.5)
    assert [m["text"] for m in fake.messages] == ["You said: What time do you open?", "You said: *bold* <b>x</b>"]
    assert all("parse_mode" not in m and "reply_to_message_id" not in m for m in fake.messages)
    assert [j["status"] for j in jobs(serve)] == ["done", "done"]
    [(title, conversation)] = conversations(serve).items()  # the private chat is one conversation
    assert title == "Telegram @ann: What time do you open?"
    assert [text for role, text in history(serve, conversation) if role == "user"] == [
        "What time do you open?", "*bold* <b>x</b>"]
    detail = get(serve, f"/v1/admin/conversations/{conversation}")  # the console's "On the channel"
    assert [(d["direction"], d["status"]) for d in detail["deliveries"]] == [
        ("in", "received"), ("out", "sent"), ("in", "edited: not answered"), ("in", "received"), ("out", "sent")]


@pytest.mark.parametrize("script", [[{"text": "Nice caption."}]])
def test_a_sticker_gets_a_note_and_a_photo_is_read_by_its_caption(serve: str, fake: FakeTelegram) -> None:
    sticker = message(None, 20, sticker={"file_id": "CAAC", "emoji": "👍"})
    assert post(serve, sticker).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1, "the note")
    assert fake.messages[0]["text"] == "I can only read text messages: please write your question."
    photo = message(None, 21, photo=[{"file_id": "AgAD", "width": 90, "height": 90}], caption="What is this?")
    assert post(serve, photo).status_code == 200
    wait_for(lambda: len(fake.messages) >= 2 and ended(serve), "the photo's answer")
    assert fake.messages[1]["text"] == "Nice caption."
    [conversation] = conversations(serve).values()
    assert ("user", "What is this?\n[a photo]") in history(serve, conversation)


def test_in_a_group_only_what_is_addressed_to_the_bot_is_answered(serve: str, fake: FakeTelegram) -> None:
    """A mention of the bot, a command, a reply to the bot's message: answered, quoting it; a group is one
    conversation, and a forum topic one of its own, answered in the topic."""
    mention = message("@HelperBot when do you open?", 30, chat=GROUP,
                      entities=[{"type": "mention", "offset": 0, "length": 10}])
    assert post(serve, mention).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1, "the mention's answer")
    assert fake.messages[0] == {"chat_id": GROUP, "text": "You said: when do you open?", "reply_to_message_id": 30,
                                "allow_sending_without_reply": True, "link_preview_options": {"is_disabled": True}}
    unaddressed = [
        message("just chatting", 31, chat=GROUP, user=BOB, username="bob"),
        message("/help@OtherBot", 32, chat=GROUP, entities=[{"type": "bot_command", "offset": 0, "length": 14}]),
        message("ask @bob", 33, chat=GROUP, entities=[{"type": "mention", "offset": 4, "length": 4}]),
        message("a reply to Bob", 34, chat=GROUP, reply_to_message={"message_id": 31, "from": {"id": BOB}}),
    ]
    assert [post(serve, update).status_code for update in unaddressed] == [200] * 4
    addressed = [
        message("/start", 35, chat=GROUP, entities=[{"type": "bot_command", "offset": 0, "length": 6}]),
        message("and Sunday?", 36, chat=GROUP, user=BOB, username="bob",
                reply_to_message={"message_id": 1001, "from": {"id": BOT_ID, "is_bot": True}}),
        message("🙂 @helperbot in the topic", 37, chat=GROUP, message_thread_id=7, is_topic_message=True,
                entities=[{"type": "mention", "offset": 3, "length": 10}]),  # 🙂 is two UTF-16 units
    ]
    assert [post(serve, update).status_code for update in addressed] == [200] * 3
    wait_for(lambda: len(fake.messages) >= 4 and ended(serve), "the three answers")
    time.sleep(0.5)
    assert [(m["text"], m.get("reply_to_message_id"), m.get("message_thread_id")) for m in fake.messages] == [
        ("You said: when do you open?", 30, None), ("You said: /start", 35, None),
        ("You said: and Sunday?", 36, None), ("You said: 🙂 in the topic", 37, 7)]
    assert fake.calls.count("getMe") == 1  # asked once, when a mention first needed the bot's name
    titles = conversations(serve)
    assert set(titles) == {"Telegram Support group: when do you open?", "Telegram Support group: 🙂 in the topic"}
    assert [t for r, t in history(serve, titles["Telegram Support group: when do you open?"]) if r == "user"] == [
        "when do you open?", "/start", "and Sunday?"]


@pytest.mark.parametrize("options", [{"allow_from": [BOB, "@Carol"]}])
def test_allow_from_answers_only_the_ids_and_usernames_it_lists(serve: str, fake: FakeTelegram) -> None:
    assert post(serve, message("from ann", 40)).status_code == 200
    assert post(serve, message("from bob", 41, user=BOB, username="bob")).status_code == 200
    assert post(serve, message("from carol", 42, user=333333, username="carol")).status_code == 200
    wait_for(lambda: len(fake.messages) >= 2 and ended(serve), "two replies")
    time.sleep(0.5)
    assert sorted((m["chat_id"], m["text"]) for m in fake.messages) == [
        (BOB, "You said: from bob"), (333333, "You said: from carol")]
    assert len(jobs(serve)) == 2  # nothing stored for Ann


def test_a_flood_limit_is_waited_out_and_the_answer_sent_once(serve: str, fake: FakeTelegram) -> None:
    fake.failures = [(429, "Too Many Requests: retry after 1", {"retry_after": 1}), (502, "Bad Gateway", {})]
    started = time.monotonic()
    assert post(serve, message("hello", 50)).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1 and ended(serve), "the reply")
    time.sleep(0.5)
    assert [m["text"] for m in fake.messages] == ["You said: hello"] and fake.calls.count("sendMessage") == 3
    assert time.monotonic() - started >= 1.0  # retry_after was honoured
    [job] = jobs(serve)
    assert (job["status"], job["attempts"]) == ("done", 2)  # the 502 was the job's retry


def test_a_user_who_blocked_the_bot_ends_the_job_with_why(serve: str, fake: FakeTelegram) -> None:
    fake.failures = [(403, "Forbidden: bot was blocked by the user", {})]
    assert post(serve, message("hello", 60)).status_code == 200
    wait_for(lambda: ended(serve) and len(jobs(serve)) == 1, "the job to end")
    [job] = jobs(serve)
    assert job["status"] == "dead" and job["attempts"] == 1 and fake.messages == []
    assert "HTTP 403, Forbidden: bot was blocked by the user (the user blocked the bot)" in job["last_error"]
    assert TOKEN not in job["last_error"]
    [conversation] = conversations(serve).values()
    [delivery] = get(serve, f"/v1/admin/conversations/{conversation}")["deliveries"]
    assert delivery["status"] == "answer not sent" and "bot was blocked by the user" in delivery["error"]


LONG = "\n\n".join(f"Paragraph {i}: " + "word " * 180 for i in range(12))  # ~11,000 characters


@pytest.mark.parametrize("script", [[{"text": LONG}]])
def test_a_long_answer_goes_as_several_messages_in_order(serve: str, fake: FakeTelegram) -> None:
    update = message("tell me everything", 70, chat=GROUP, message_thread_id=9, is_topic_message=True,
                     entities=[{"type": "bot_command", "offset": 0, "length": 4}])
    update["message"]["text"] = "/all tell me everything"
    assert post(serve, update).status_code == 200
    wait_for(lambda: ended(serve) and len(jobs(serve)) == 1, "the job to end")
    assert len(fake.messages) == 3 and all(len(m["text"]) <= 4096 for m in fake.messages)
    assert [m.get("reply_to_message_id") for m in fake.messages] == [70, None, None]  # the first quotes it
    assert {m["message_thread_id"] for m in fake.messages} == {9}
    assert " ".join(" ".join(m["text"].split()) for m in fake.messages) == " ".join(LONG.split())


def test_fifty_messages_from_ten_users_at_once_are_each_answered_once_in_order(serve: str,
                                                                               fake: FakeTelegram) -> None:
    def user(index: int) -> None:
        for turn in range(5):  # each user's five in order, the ten users at once (each delivered twice)
            update = message(f"user {index} message {turn}", 100 + turn, user=900 + index, username=f"u{index}")
            assert post(serve, update).status_code == 200
            assert post(serve, update).status_code == 200

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
        assert [m["text"] for m in fake.messages if m["chat_id"] == 900 + index] == [
            f"You said: user {index} message {turn}" for turn in range(5)]
    assert len(conversations(serve)) == 10


# -- without a server ------------------------------------------------------------------------------------------
def test_settings_and_missing_secrets_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HG_TEST_TG_TOKEN", TOKEN)
    monkeypatch.setenv("HG_TEST_TG_SECRET", SECRET)
    monkeypatch.setenv("HG_TEST_TG_NOT_A_TOKEN", "hello")
    monkeypatch.setenv("HG_TEST_TG_BAD_SECRET", "has spaces!")
    good = {"bot_token": "HG_TEST_TG_TOKEN", "secret_token": "HG_TEST_TG_SECRET"}
    cases: dict[str, dict[str, Any]] = {
        "channels.telegram.bot_token: names the secret that holds it": {**good, "bot_token": TOKEN},
        "channels.telegram.allow_from: 'ann' is not a Telegram user id": {**good, "allow_from": ["ann"]},
        "channels.telegram.answer: Input should be 'mentions' or 'all'": {**good, "answer": "everything"},
        "channels.telegram.api_url: must be an http(s) URL": {**good, "api_url": "api.telegram.org"},
        "channels.telegram.parse_mode: unknown field": {**good, "parse_mode": "HTML"},
        "channels.telegram.secret_token: required field is missing": {"bot_token": "HG_TEST_TG_TOKEN"},
        "channels.telegram.secret_token: the secret HG_TEST_NOT_SET is not set; export HG_TEST_NOT_SET=<a random "
        "webhook secret> or run `keyring set halguru HG_TEST_NOT_SET`": {**good, "secret_token": "HG_TEST_NOT_SET"},
        "channels.telegram.bot_token: the secret HG_TEST_TG_NOT_A_TOKEN is not a bot token": {
            **good, "bot_token": "HG_TEST_TG_NOT_A_TOKEN"},
        "channels.telegram.secret_token: the secret HG_TEST_TG_BAD_SECRET must be 1-256 of": {
            **good, "secret_token": "HG_TEST_TG_BAD_SECRET"},
    }
    for expected, config in cases.items():
        with pytest.raises(AgentSpecError) as caught:
            TelegramChannel("helper", config, tmp_path)
        assert str(caught.value).startswith(f"agent helper: {expected}") and "\n" not in str(caught.value)
    channel = TelegramChannel("helper", {**good, "api_url": "http://127.0.0.1:8081/", "allow_from": [1, "@Ann"]},
                              tmp_path)
    assert (channel.config.api_url, channel.config.allow_from, channel.bot_id) == (
        "http://127.0.0.1:8081", ["1", "@ann"], str(BOT_ID))


def test_telegram_webhook_sets_the_url_and_secret(tmp_path: Path, fake: FakeTelegram, halguru_cmd: list[str],
                                                  subprocess_env: dict[str, str]) -> None:
    folder = helper_agent(tmp_path, {"telegram": {"bot_token": "HG_TEST_TG_TOKEN", "api_url": fake.url,
                                                  "secret_token": "HG_TEST_TG_SECRET"}}, [])
    env = {**subprocess_env, "HG_TEST_TG_TOKEN": TOKEN, "HG_TEST_TG_SECRET": SECRET}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*halguru_cmd, "channels", "telegram-webhook", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    done = run(str(folder), "--url", "https://bot.example.com/")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ("Telegram posts helper's updates to https://bot.example.com/channels/telegram/"
                                   "helper now (with its secret token).")
    assert fake.webhook == {"url": "https://bot.example.com/channels/telegram/helper", "secret_token": SECRET,
                            "allowed_updates": ["message", "edited_message"]}
    refused = [run(str(folder), "--url", "http://bot.example.com"), run(str(folder), "--url", "bot.example.com"),
               run(str(tmp_path / "nowhere"), "--url", "https://bot.example.com")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "agent.yaml").write_text("name: other\nmodel: scripted\ninstructions: Help.\n")
    refused.append(run(str(other), "--url", "https://bot.example.com"))
    for result in refused:
        assert result.returncode != 0 and "Traceback" not in result.stderr and TOKEN not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "HTTP 400, Bad Request: bad webhook: An HTTPS URL must be provided for webhook" in refused[0].stderr
    assert "--url: must be an http(s) URL" in refused[1].stderr
    assert "agent other has no telegram channel" in refused[3].stderr


def test_the_token_in_a_bot_api_url_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs each request's URL at INFO; a Bot API URL holds the bot's token."""
    import halguru.channels.telegram  # noqa: F401  (its filter on httpx's logger)

    with caplog.at_level(logging.INFO, logger="httpx"):
        logging.getLogger("httpx").info('HTTP Request: %s %s "%s %d %s"', "POST",
                                        f"https://api.telegram.org/bot{TOKEN}/sendMessage", "HTTP/1.1", 200, "OK")
    assert caplog.messages == ['HTTP Request: POST https://api.telegram.org/bot<token>/sendMessage "HTTP/1.1 200 OK"']


def test_the_readme_telegram_section_validates_as_written(tmp_path: Path, halguru_cmd: list[str],
                                                          subprocess_env: dict[str, str]) -> None:
    section = README.read_text().split("#### Telegram", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    agent = tmp_path / "helper"
    agent.mkdir()
    (agent / "agent.yaml").write_text("name: helper\nmodel: scripted\ninstructions: Help.\n" + block.group(1))
    names = re.findall(r"(?:bot_token|secret_token): (\w+)", block.group(1))
    assert names == ["TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"]
    env = {k: v for k, v in subprocess_env.items() if not k.startswith("TELEGRAM_")}
    missing = subprocess.run([*halguru_cmd, "validate", str(agent)], env=env, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr + missing.stdout
    assert "the secret TELEGRAM_BOT_TOKEN is not set; export TELEGRAM_BOT_TOKEN=" in missing.stdout + missing.stderr
    ok = subprocess.run([*halguru_cmd, "validate", str(agent)], capture_output=True, text=True, timeout=60,
                        env={**env, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET})
    assert ok.returncode == 0, ok.stdout + ok.stderr


class _Sink:
    """What the webhook hands on, kept: the pipeline's part, without a store."""

    def __init__(self) -> None:
        self.accepted: list[Any] = []

    def seen(self, channel: str, agent: str, message_id: str) -> bool:
        return any(m.message_id == message_id for m in self.accepted)

    def answered(self, *args: Any) -> int:
        return 0

    def accept(self, message: Any) -> bool:
        self.accepted.append(message)
        return True


def _channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_url: str) -> TelegramChannel:
    monkeypatch.setenv("HG_TEST_TG_TOKEN", TOKEN)
    monkeypatch.setenv("HG_TEST_TG_SECRET", SECRET)
    return TelegramChannel("helper", {"bot_token": "HG_TEST_TG_TOKEN", "secret_token": "HG_TEST_TG_SECRET",
                                      "api_url": api_url}, tmp_path)


async def _once(key: str, send: Any, find: Any = None) -> Any:
    return await send()


def test_a_mention_is_not_lost_while_getme_cannot_be_reached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a group message mentions the bot needs its username: while getMe fails, Telegram is told 503 (it
    sends the update again later) and nothing is taken; once it answers, the message is."""
    import asyncio
    import json
    import socket

    from halguru.channels.base import WebhookRequest

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    update = message("@HelperBot hi", 5, chat=GROUP, entities=[{"type": "mention", "offset": 0, "length": 10}])
    request = WebhookRequest(method="POST", path="", query="", body=json.dumps(update).encode(), form={},
                             headers={"x-telegram-bot-api-secret-token": SECRET})
    sink = _Sink()
    down = asyncio.run(_channel(tmp_path, monkeypatch, closed).webhook(request, sink))  # type: ignore[arg-type]
    assert down.status == 503 and sink.accepted == []
    fake = FakeTelegram(TOKEN, "HelperBot").start()
    try:
        up = asyncio.run(_channel(tmp_path, monkeypatch, fake.url).webhook(request, sink))  # type: ignore[arg-type]
    finally:
        fake.stop()
    assert up.status == 200 and [m.text for m in sink.accepted] == ["hi"]


def test_the_bots_name_is_taken_out_of_a_private_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         fake: FakeTelegram) -> None:
    import asyncio
    import json

    from halguru.channels.base import WebhookRequest

    update = message("@helperbot what is new?", 6, entities=[{"type": "mention", "offset": 0, "length": 10}])
    request = WebhookRequest(method="POST", path="", query="", body=json.dumps(update).encode(), form={},
                             headers={"x-telegram-bot-api-secret-token": SECRET})
    sink = _Sink()
    answer = asyncio.run(_channel(tmp_path, monkeypatch, fake.url).webhook(request, sink))  # type: ignore[arg-type]
    assert answer.status == 200 and [m.text for m in sink.accepted] == ["what is new?"]


def test_emoji_count_two_and_a_group_that_became_a_supergroup_is_answered_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: FakeTelegram) -> None:
    import asyncio

    from halguru.channels.base import Outbound

    channel = _channel(tmp_path, monkeypatch, fake.url)
    fake.failures = [(400, "Bad Request: group chat was upgraded to a supergroup chat",
                      {"migrate_to_chat_id": -100777})]
    answer = Outbound(channel="telegram", agent="helper", conversation_id="c", job_id="j", text="🙂" * 3000,
                      reply={"chat_id": -555, "reply_to": 9})
    sent = asyncio.run(channel.send(answer, _once))
    assert len(sent) == 2 and all(len(m["text"].encode("utf-16-le")) // 2 <= 4096 for m in fake.messages)
    assert [m["chat_id"] for m in fake.messages] == [-100777, -100777]
    assert "".join(m["text"] for m in fake.messages) == "🙂" * 3000
