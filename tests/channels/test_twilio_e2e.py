"""The whole Twilio pipeline: `halguru serve --dev` (a real process) answers signed webhooks through a real HTTP
stand-in for Twilio's REST API.

A signed webhook -> serve checks it against the public URL and queues it once -> the in-process worker runs the
scripted agent (it echoes: "You said: ...") in the sender's conversation -> exactly one message reaches the fake
Twilio, sent from our number to the sender; Twilio's retries of the same MessageSid change nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from halguru.store import open_store
from tests.channels.fake_twilio import FakeTwilio
from tests.channels.serving import helper_agent, serve_settings, serving, wait_for

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "e" * 32
PUBLIC = "https://bot.example.com"  # what Twilio calls (a proxy in front): never the address serve listens on
OURS = "+15550001111"
ANN = "+15557654321"



@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    server = FakeTwilio(SID, TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def script(tmp_path: Path) -> list[dict[str, Any]]:
    """The scripted model's replies before it echoes (a test may add some before serve starts)."""
    return []


@pytest.fixture
def spec() -> dict[str, Any]:
    """More of agent.yaml (a test may add tools and approvals)."""
    return {}


@pytest.fixture
def serve(tmp_path: Path, fake: FakeTwilio, script: list[dict[str, Any]], spec: dict[str, Any],
          halguru_cmd: list[str], subprocess_env: dict[str, str]) -> Iterator[str]:
    """`halguru serve --dev` on a free port, serving agent `helper` with a Twilio channel; its base URL."""
    folder = helper_agent(tmp_path, {"twilio": {
        "account_sid": SID, "auth_token": "HG_TEST_TWILIO_TOKEN", "public_url": PUBLIC,
        "numbers": [OURS, f"whatsapp:{OURS}"], "api_base": fake.url}}, script, **spec)
    config = serve_settings(tmp_path)
    with serving(folder, config, halguru_cmd, {**subprocess_env, "HG_TEST_TWILIO_TOKEN": TOKEN}) as url:
        yield url


def post(url: str, fields: dict[str, str], path: str = "", token: str = TOKEN) -> httpx.Response:
    """POST as Twilio does: the form, signed for the public URL Twilio was given."""
    suffix = f"/channels/twilio/helper{'/' + path if path else ''}"
    signature = RequestValidator(token).compute_signature(PUBLIC + suffix, fields)
    return httpx.post(url + suffix, data=fields, headers={"X-Twilio-Signature": signature}, timeout=10)


def sms(sid: str, body: str, sender: str = ANN, ours: str = OURS) -> dict[str, str]:
    return {"MessageSid": sid, "SmsMessageSid": sid, "AccountSid": SID, "From": sender, "To": ours, "Body": body,
            "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01"}


def get(url: str, path: str, **params: Any) -> Any:
    response = httpx.get(url + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_signed_sms_gets_exactly_one_reply_however_often_twilio_retries(serve: str, fake: FakeTwilio) -> None:
    message = sms("SM" + "a" * 32, "What time do you open?")
    answers = [post(serve, message) for _ in range(3)]  # Twilio retries a webhook it thinks failed
    assert [(a.status_code, a.headers["content-type"].split(";")[0]) for a in answers] == [(200, "text/xml")] * 3
    assert all(a.text.endswith("<Response></Response>") for a in answers)
    tampered = post(serve, {**sms("SM" + "b" * 32, "hi"), "Body": "x"}, token="0" * 32)
    assert tampered.status_code == 403 and tampered.json()["error"]["type"] == "forbidden"  # the one error shape
    assert "signature" in tampered.json()["error"]["message"]

    wait_for(lambda: len(fake.messages) >= 1, "the reply at Twilio")
    [reply] = fake.messages
    assert (reply["to"], reply["from"], reply["body"]) == (ANN, OURS, "You said: What time do you open?")
    assert reply["status_callback"] == f"{PUBLIC}/channels/twilio/helper/status"
    wait_for(lambda: get(serve, "/v1/jobs")["data"][0]["status"] == "done", "the job to finish")
    assert len(get(serve, "/v1/jobs")["data"]) == 1  # one job for the three deliveries, none for the forgery

    [conversation] = get(serve, "/v1/conversations", agent="helper")["data"]
    assert conversation["title"] == f"SMS from {ANN}"
    history = get(serve, f"/v1/conversations/{conversation['id']}/messages")["data"]
    assert [(m["role"], m["content"]) for m in history] == [("user", "What time do you open?"),
                                                            ("assistant", "You said: What time do you open?")]
    time.sleep(0.5)  # a second run or send would have had time to happen
    assert len(fake.messages) == 1

    status = post(serve, {"MessageSid": reply["sid"], "MessageStatus": "delivered", "AccountSid": SID,
                          "From": OURS, "To": ANN}, path="status")
    assert status.status_code == 200
    record = open_store().get_channel_message("twilio", reply["sid"])
    assert record is not None and record["status"] == "delivered"


SLOW = "Let me check that for you."


@pytest.mark.parametrize("script", [[{"text": SLOW, "token_delay": 0.1}]])
def test_two_messages_from_one_sender_are_answered_in_order_in_one_conversation(serve: str,
                                                                                fake: FakeTwilio) -> None:
    """Each answer takes 0.6 s (the script starts again each run): answered side by side, both questions would
    be stored before either answer."""
    for index, text in enumerate(["first", "second"]):
        assert post(serve, sms(f"SM{index:032d}", text)).status_code == 200
    wait_for(lambda: len(fake.messages) == 2, "two replies")
    assert [(m["to"], m["body"]) for m in fake.messages] == [(ANN, SLOW), (ANN, SLOW)]
    assert post(serve, sms("SM" + "c" * 32, "hola", f"whatsapp:{ANN}", f"whatsapp:{OURS}")).status_code == 200
    wait_for(lambda: len(fake.messages) == 3, "the WhatsApp reply")
    assert (fake.messages[2]["to"], fake.messages[2]["from"], fake.messages[2]["body"]) == (
        f"whatsapp:{ANN}", f"whatsapp:{OURS}", SLOW)
    conversations = {c["title"]: c for c in get(serve, "/v1/conversations", agent="helper")["data"]}
    assert set(conversations) == {f"SMS from {ANN}", f"WhatsApp from {ANN}"}  # one per sender and product
    history = get(serve, f"/v1/conversations/{conversations[f'SMS from {ANN}']['id']}/messages")["data"]
    assert [m["content"] for m in history] == ["first", SLOW, "second", SLOW]


def test_a_message_over_max_input_chars_is_cut_and_answered_once(serve: str, fake: FakeTwilio) -> None:
    """Twilio cannot be told 413: a 20,000-character Body (the limit is 16,000) was stored and run whole, and a
    run whose prompt does not fit failed each of its retries."""
    assert post(serve, sms("SM" + "d" * 32, "word " * 4000)).status_code == 200
    wait_for(lambda: len(fake.messages) >= 1, "the reply at Twilio")
    wait_for(lambda: get(serve, "/v1/jobs")["data"][0]["status"] == "done", "the job to finish")
    [conversation] = get(serve, "/v1/conversations", agent="helper")["data"]
    question = get(serve, f"/v1/conversations/{conversation['id']}/messages")["data"][0]["content"]
    assert question.startswith("word word") and len(question) < 16_200
    assert question.endswith("[the message was cut here: it has 20000 characters and this server reads at most 16000]")
    assert get(serve, "/v1/jobs")["data"][0]["attempts"] == 1


def test_outsiders_cannot_tell_which_agents_have_a_webhook_nor_send_it_unlimited_bodies(serve: str) -> None:
    """An agent's webhook answered 405 to a GET and 403 to an unsigned POST where a name without one answered
    404: key-only agents' names could be probed. And a chunked body on a GET was read whole, without the 1 MB
    limit (1 GB in 5 s took the server from 225 MB to 1.2 GB)."""
    answers = [httpx.request(method, serve + path, data={"Body": "x"} if method == "POST" else None, timeout=10)
               for method in ("GET", "POST") for path in ("/channels/twilio/helper", "/channels/twilio/nobody",
                                                          "/channels/sms/helper", "/channels/twilio/helper/voice")]
    assert {(a.status_code, a.json()["error"]["message"]) for a in answers} == {
        (403, "the request has no valid signature for this webhook")}

    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"x" * 512_000

    big = httpx.request("GET", serve + "/channels/twilio/helper", content=chunks(), timeout=10)
    assert big.status_code == 413
    # nor a form that is not UTF-8, nor a body over the limit, tells one apart
    form = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/channels/twilio/helper", "/channels/twilio/nobody"):
        bad = httpx.post(serve + path, content=b"a=\xff", headers=form, timeout=10)
        assert (bad.status_code, bad.json()["error"]["message"]) == (403, "the request has no valid signature for "
                                                                           "this webhook")
        assert httpx.post(serve + path, content=b"x" * 1_100_000, headers=form, timeout=10).status_code == 413


@pytest.mark.parametrize("spec", [{"tools": ["calculator"], "approvals": ["calculator"]}])
@pytest.mark.parametrize("script", [[{"tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}]}]])
def test_an_answer_that_waited_for_approval_is_sent_once_approved(serve: str, fake: FakeTwilio,
                                                                  tmp_path: Path) -> None:
    """The agent's tool call waited for an operator; approved, the continuation's answer was stored in the
    conversation and never sent: the person who texted heard nothing. Sent once, however often it is asked, and
    before the answer to a message that came while it waited (that one waits for the paused turn, ~30 s here)."""
    assert post(serve, sms("SM" + "e" * 32, "what is 6 times 7?")).status_code == 200
    wait_for(lambda: get(serve, "/v1/jobs")["data"][0]["status"] == "done", "the job to pause")
    [conversation] = get(serve, "/v1/conversations", agent="helper")["data"]
    [paused] = [r for r in get(serve, "/v1/runs", agent="helper")["data"] if r["status"] == "paused"]
    assert fake.messages == []  # nothing to say yet
    assert post(serve, sms("SM" + "f" * 32, "are you there?")).status_code == 200  # waits for the paused turn
    (tmp_path / "script.yaml").write_text("[]")  # the model echoes from now on
    approved = httpx.post(f"{serve}/v1/runs/{paused['id']}/approve", json={}, timeout=30)
    assert approved.status_code == 200 and approved.json()["output"] == "You said: what is 6 times 7?"
    wait_for(lambda: len(fake.messages) >= 2, "both answers at Twilio", timeout=60)
    assert [(m["to"], m["from"], m["body"]) for m in fake.messages] == [
        (ANN, OURS, "You said: what is 6 times 7?"), (ANN, OURS, "You said: are you there?")]  # in order
    assert httpx.post(f"{serve}/v1/runs/{paused['id']}/approve", json={}, timeout=30).status_code == 409
    time.sleep(1)
    assert len(fake.messages) == 2
    history = get(serve, f"/v1/conversations/{conversation['id']}/messages")["data"]
    assert [m["content"] for m in history if m["role"] == "assistant" and m["content"]] == [
        "You said: what is 6 times 7?", "You said: are you there?"]


def test_a_sender_who_texted_stop_is_recorded_not_answered_until_start(serve: str, fake: FakeTwilio) -> None:
    """Twilio answers STOP itself and refuses every later message to the sender (error 21610). Their next message
    ran the agent anyway and its reply died at Twilio, a model run spent and nothing in the console saying why.
    Now it is recorded unanswered, shown on the conversation, and START opts them back in."""
    bob = "+15550002222"
    fake.unsubscribed.add((OURS, ANN))  # what Twilio does on STOP
    for index, (sender, body) in enumerate([(ANN, "STOP"), (ANN, "What time do you open?"), (bob, "hi")]):
        assert post(serve, sms(f"SM{index:032d}", body, sender)).status_code == 200
    wait_for(lambda: {j["status"] for j in get(serve, "/v1/jobs")["data"]} <= {"done", "dead"}, "the jobs to end")
    assert [(j["status"], j["payload"]["sender"]) for j in get(serve, "/v1/jobs")["data"]] == [("done", bob)]
    assert [(m["to"], m["body"]) for m in fake.messages] == [(bob, "You said: hi")]
    conversations = {c["title"]: c["id"] for c in get(serve, "/v1/conversations", agent="helper")["data"]}
    detail = get(serve, f"/v1/admin/conversations/{conversations[f'SMS from {ANN}']}")
    assert detail["runs"] == [] and detail["messages"] == []
    assert [(d["direction"], d["status"]) for d in detail["deliveries"]] == [
        ("in", "opted out"), ("in", "ignored: opted out (STOP)")]

    fake.unsubscribed.discard((OURS, ANN))  # they text START: Twilio confirms it and lets messages through
    assert post(serve, sms("SM" + "7" * 32, "start")).status_code == 200
    assert post(serve, sms("SM" + "8" * 32, "Are you open on Sunday?")).status_code == 200
    wait_for(lambda: len(fake.messages) == 2, "the answer after START")
    assert (fake.messages[1]["to"], fake.messages[1]["body"]) == (ANN, "You said: Are you open on Sunday?")


def test_why_a_reply_failed_is_kept_with_it_and_21610_opts_the_sender_out(serve: str, fake: FakeTwilio) -> None:
    """Twilio's status callback says why a reply failed (ErrorCode 30003: the phone is off; 21610: they opted
    out); it was logged, and the console and GET /v1/admin/conversations/ID read 'undelivered' and nothing more.
    A 21610 left the sender to be answered again, each reply refused the same way."""
    for index, sender in enumerate([ANN, "+15550002222"]):
        assert post(serve, sms(f"SM{index:032d}", "hello", sender)).status_code == 200
    wait_for(lambda: len(fake.messages) == 2, "both replies")
    for reply, code in zip(fake.messages, ["30003", "21610"], strict=True):
        callback = {"MessageSid": reply["sid"], "MessageStatus": "undelivered", "ErrorCode": code,
                    "AccountSid": SID, "From": OURS, "To": reply["to"]}
        assert post(serve, callback, path="status").status_code == 200
    conversations = {c["title"]: c["id"] for c in get(serve, "/v1/conversations", agent="helper")["data"]}
    outcomes = {}
    for sender in (ANN, "+15550002222"):
        detail = get(serve, f"/v1/admin/conversations/{conversations[f'SMS from {sender}']}")
        outcomes[sender] = [(d["direction"], d["status"], d["error"]) for d in detail["deliveries"]]
    assert outcomes == {
        ANN: [("in", "received", None), ("out", "undelivered", "error 30003: unreachable handset (off, or out of "
                                                               "coverage)")],
        "+15550002222": [("in", "received", None), ("out", "undelivered", "error 21610: the recipient opted out "
                                                                          "(STOP)")]}
    assert post(serve, sms("SM" + "9" * 32, "still there?", "+15550002222")).status_code == 200
    detail = get(serve, f"/v1/admin/conversations/{conversations['SMS from +15550002222']}")
    assert detail["deliveries"][-1]["status"] == "ignored: opted out (twilio error 21610)"
