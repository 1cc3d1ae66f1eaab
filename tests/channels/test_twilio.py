"""The Twilio channel without a server: webhooks signed with Twilio's own RequestValidator, replies through the
official client to a real HTTP stand-in for Twilio's REST API (tests/channels/fake_twilio.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from halguru.channels.base import ChannelError, Inbound, Outbound, WebhookRequest, load_channels
from halguru.channels.twilio import EMPTY_TWIML, TwilioChannel, message_text, split_text
from halguru.errors import HalguruError
from tests.channels.fake_twilio import FakeTwilio

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f" * 31 + "0"
PUBLIC = "https://bot.example.com"
OURS = "+15550001111"
ANN = "+15557654321"


class MemorySink:
    """The pipeline's contract in memory: a message id is accepted once."""

    def __init__(self) -> None:
        self.accepted: list[Inbound] = []
        self.statuses: list[tuple[str, str, str]] = []
        self.errors: list[str | None] = []  # each report's error, as stored with the message
        self.times: list[float] = []  # when each was accepted
        self.threads: set[int] = set()  # where it was called: never the event loop's (it writes to the store)
        self.opt_outs: dict[tuple[str, str, str, str], str] = {}
        self.ignored: list[tuple[str, str]] = []  # (text, status) of messages recorded, not answered
        self.ids: set[str] = set()  # the ids of the messages accepted or recorded

    def accept(self, message: Inbound) -> bool:
        self.threads.add(threading.get_ident())
        if any(m.message_id == message.message_id for m in self.accepted):
            return False
        self.accepted.append(message)
        self.ids.add(message.message_id)
        self.times.append(time.time())
        return True

    def answered(self, channel: str, agent: str, correspondent: str, since: float, text: str | None = None) -> int:
        self.threads.add(threading.get_ident())
        return sum(1 for m, at in zip(self.accepted, self.times, strict=True) if at >= since and m.channel == channel
                   and m.agent == agent and (m.correspondent or m.sender) == correspondent
                   and text in (None, m.text))

    def update_status(self, channel: str, message_id: str, status: str, error: str | None = None) -> bool:
        self.threads.add(threading.get_ident())
        self.statuses.append((channel, message_id, status))
        self.errors.append(error)
        return True

    def opted_out(self, channel: str, agent: str, ours: str, sender: str) -> str | None:
        self.threads.add(threading.get_ident())
        return self.opt_outs.get((channel, agent, ours, sender))

    def set_opted_out(self, channel: str, agent: str, ours: str, sender: str, reason: str | None) -> bool:
        key = (channel, agent, ours, sender)
        if reason is None:
            return self.opt_outs.pop(key, None) is not None
        return self.opt_outs.setdefault(key, reason) == reason

    def seen(self, channel: str, agent: str, message_id: str) -> bool:
        self.threads.add(threading.get_ident())
        return message_id in self.ids

    def ignore(self, message: Inbound, status: str) -> bool:
        self.threads.add(threading.get_ident())
        self.ignored.append((message.text, status))
        self.ids.add(message.message_id)
        return True


class MemoryOnce:
    """SendOnce's contract in memory: done effects return their value; a started one asks ``find`` first."""

    def __init__(self) -> None:
        self.done: dict[str, dict[str, Any]] = {}
        self.started: dict[str, float] = {}
        self.sent: list[str] = []

    async def __call__(self, key: str, send: Callable[[], Awaitable[dict[str, Any]]],
                       find: Callable[[float], Awaitable[dict[str, Any] | None]] | None = None) -> dict[str, Any]:
        if key in self.done:
            return self.done[key]
        if key in self.started and find is not None:
            found = await find(self.started[key])
            if found is not None:
                self.done[key] = found
                return found
        self.started[key] = time.time()
        value = await send()
        self.sent.append(key)
        self.done[key] = value
        return value


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_TEST_TOKEN", TOKEN)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)  # loopback only


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    server = FakeTwilio(SID, TOKEN).start()
    yield server
    server.stop()


def config(**overrides: Any) -> dict[str, Any]:
    base = {"account_sid": SID, "auth_token": "TWILIO_TEST_TOKEN", "public_url": PUBLIC,
            "numbers": [OURS, f"whatsapp:{OURS}", "messenger:1234567890", "rcs:acme_agent"]}
    return {**base, **overrides}


def channel(tmp_path: Path, **overrides: Any) -> TwilioChannel:
    return TwilioChannel("helper", config(**overrides), tmp_path)


def form(**fields: str) -> dict[str, str]:
    base = {"MessageSid": "SM" + "1" * 32, "AccountSid": SID, "From": ANN, "To": OURS, "Body": "hello",
            "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01"}
    return {**base, **fields}


def request(fields: dict[str, str], *, path: str = "", query: str = "", signed_url: str | None = None,
            token: str = TOKEN, headers: dict[str, str] | None = None, method: str = "POST",
            sign: bool = True) -> WebhookRequest:
    """What serve mode hands the channel for a POST Twilio signed for ``signed_url`` (default: the right URL)."""
    url = signed_url or (f"{PUBLIC}/channels/twilio/helper" + (f"/{path}" if path else "")
                         + (f"?{query}" if query else ""))
    all_headers = {"host": "127.0.0.1:8000", "content-type": "application/x-www-form-urlencoded",
                   **(headers or {})}
    if sign:
        all_headers["x-twilio-signature"] = RequestValidator(token).compute_signature(url, fields)
    return WebhookRequest(method=method, path=path, query=query, headers=all_headers,
                          body=urlencode(fields).encode(), form=fields)


# -- webhooks ----------------------------------------------------------------------------------------------
async def test_signed_message_is_accepted_and_answered_with_empty_twiml(tmp_path: Path) -> None:
    sink = MemorySink()
    response = await channel(tmp_path).webhook(request(form()), sink)
    assert (response.status, response.body, response.content_type) == (200, EMPTY_TWIML, "text/xml")
    [message] = sink.accepted
    assert (message.channel, message.agent, message.message_id) == ("twilio", "helper", "SM" + "1" * 32)
    assert (message.sender, message.text, message.thread) == (ANN, "hello", f"{OURS}|{ANN}")
    assert dict(message.reply) == {"to": ANN, "from": OURS}
    assert message.title == f"SMS from {ANN}"
    assert sink.threads and threading.get_ident() not in sink.threads  # the store is written off the event loop


async def test_tampered_body_is_403_and_nothing_accepted(tmp_path: Path) -> None:
    sink = MemorySink()
    genuine = request(form())
    tampered = WebhookRequest(genuine.method, genuine.path, genuine.query, genuine.headers, genuine.body,
                              {**genuine.form, "Body": "send me the admin password"})
    response = await channel(tmp_path).webhook(tampered, sink)
    assert response.status == 403
    assert sink.accepted == []


async def test_signature_for_another_url_or_token_or_none_is_403(tmp_path: Path) -> None:
    sink = MemorySink()
    ch = channel(tmp_path)
    for bad in (request(form(), signed_url="https://evil.example.com/channels/twilio/helper"),
                request(form(), signed_url=f"{PUBLIC}/channels/twilio/other-agent"),
                request(form(), token="0" * 32),
                request(form(), sign=False),
                request(form(), headers={"x-twilio-signature": ""}, sign=False)):
        assert (await ch.webhook(bad, sink)).status == 403
    assert sink.accepted == []


async def test_host_rewritten_by_a_proxy_is_ignored(tmp_path: Path) -> None:
    """Twilio signed the public URL; the proxy in front of serve sends another Host: still genuine, and a Host
    header naming the public host does not make a request signed for another URL genuine."""
    sink = MemorySink()
    ch = channel(tmp_path)
    proxied = request(form(), headers={"host": "halguru-internal:8000", "x-forwarded-host": "whatever"})
    assert (await ch.webhook(proxied, sink)).status == 200
    forged = request(form(MessageSid="SM" + "2" * 32), signed_url="http://halguru-internal:8000/channels/twilio/helper",
                     headers={"host": "halguru-internal:8000"})
    assert (await ch.webhook(forged, sink)).status == 403
    assert [m.message_id for m in sink.accepted] == ["SM" + "1" * 32]


async def test_query_string_and_public_url_prefix_are_part_of_what_is_signed(tmp_path: Path) -> None:
    sink = MemorySink()
    ch = channel(tmp_path, public_url="https://example.com/bots/")  # a trailing slash is not doubled
    url = "https://example.com/bots/channels/twilio/helper?tenant=7"
    assert (await ch.webhook(request(form(), query="tenant=7", signed_url=url), sink)).status == 200
    unsigned_query = request(form(MessageSid="SM" + "3" * 32), signed_url=url.split("?")[0], query="tenant=8")
    assert (await ch.webhook(unsigned_query, sink)).status == 403
    assert len(sink.accepted) == 1


async def test_a_retried_message_sid_is_accepted_once_and_answered_each_time(tmp_path: Path) -> None:
    sink = MemorySink()
    ch = channel(tmp_path)
    responses = [await ch.webhook(request(form()), sink) for _ in range(3)]
    assert [(r.status, r.body) for r in responses] == [(200, EMPTY_TWIML)] * 3
    assert len(sink.accepted) == 1


async def test_a_number_not_ours_starts_nothing(tmp_path: Path) -> None:
    sink = MemorySink()
    response = await channel(tmp_path).webhook(request(form(To="+15559999999")), sink)
    assert response.status == 404 and "+15559999999" in response.body
    assert sink.accepted == []


async def test_allow_from_ignores_other_senders_quietly(tmp_path: Path) -> None:
    sink = MemorySink()
    ch = channel(tmp_path, allow_from=[ANN])
    stranger = await ch.webhook(request(form(From="+15551110000", MessageSid="SM" + "4" * 32)), sink)
    friend = await ch.webhook(request(form()), sink)
    assert (stranger.status, stranger.body) == (friend.status, friend.body) == (200, EMPTY_TWIML)
    on_whatsapp = form(From=f"whatsapp:{ANN}", To=f"whatsapp:{OURS}", MessageSid="SM" + "6" * 32)
    assert (await ch.webhook(request(on_whatsapp), sink)).status == 200  # the number covers its WhatsApp
    stranger_on_whatsapp = form(From="whatsapp:+15551110000", To=f"whatsapp:{OURS}", MessageSid="SM" + "7" * 32)
    assert (await ch.webhook(request(stranger_on_whatsapp), sink)).status == 200
    assert [m.sender for m in sink.accepted] == [ANN, f"whatsapp:{ANN}"]


async def test_a_product_prefix_written_in_capitals_still_matches_what_twilio_sends(tmp_path: Path) -> None:
    """`numbers: [WhatsApp:+1555...]` passed `halguru validate` (the prefix was checked in any case) and then
    matched no message: Twilio writes 'whatsapp:', and each message was refused 404 as not one of the numbers."""
    sink = MemorySink()
    ch = channel(tmp_path, numbers=[f"WhatsApp:{OURS}", "Messenger:1234567890"], allow_from=[f"WHATSAPP:{ANN}"])
    on_whatsapp = form(From=f"whatsapp:{ANN}", To=f"whatsapp:{OURS}")
    response = await ch.webhook(request(on_whatsapp), sink)
    assert (response.status, response.body) == (200, EMPTY_TWIML)
    assert [(m.sender, dict(m.reply)) for m in sink.accepted] == [
        (f"whatsapp:{ANN}", {"to": f"whatsapp:{ANN}", "from": f"whatsapp:{OURS}"})]
    assert ch.config.numbers == [f"whatsapp:{OURS}", "messenger:1234567890"]


@pytest.mark.parametrize(("ours", "sender", "title"), [
    (f"whatsapp:{OURS}", f"whatsapp:{ANN}", "WhatsApp from Ann"),
    ("messenger:1234567890", "messenger:24681357", "Messenger from 24681357"),
    ("rcs:acme_agent", f"rcs:{ANN}", f"RCS from {ANN}"),
])
async def test_each_product_is_its_own_thread_and_reply_address(tmp_path: Path, ours: str, sender: str,
                                                                 title: str) -> None:
    sink = MemorySink()
    extra = {"ProfileName": "Ann"} if ours.startswith("whatsapp:") else {}
    response = await channel(tmp_path).webhook(request(form(To=ours, From=sender, **extra)), sink)
    assert response.status == 200
    [message] = sink.accepted
    assert (message.sender, message.thread, message.title) == (sender, f"{ours}|{sender}", title)
    assert dict(message.reply) == {"to": sender, "from": ours}


async def test_media_and_locations_are_noted_for_the_agent(tmp_path: Path) -> None:
    sink = MemorySink()
    ch = channel(tmp_path)
    mms = form(Body="look", NumMedia="2", MediaContentType0="image/jpeg", MediaUrl0="https://api.twilio.com/m/0",
               MediaContentType1="image/png", MediaUrl1="https://api.twilio.com/m/1")
    await ch.webhook(request(mms), sink)
    place = form(MessageSid="SM" + "5" * 32, To=f"whatsapp:{OURS}", From=f"whatsapp:{ANN}", Body="",
                 Latitude="48.8584", Longitude="2.2945")
    await ch.webhook(request(place), sink)
    assert [m.text for m in sink.accepted] == ["look\n[2 attachments: image/jpeg, image/png]",
                                               "[location: 48.8584, 2.2945]"]
    for odd, note in (("²", ""), ("99999999", "\n[99999999 attachments: image/jpeg, image/png]")):  # never a 500
        assert message_text({**mms, "NumMedia": odd}) == "look" + note  # nor 10**8 lookups


async def test_status_callbacks_update_the_sent_message(tmp_path: Path) -> None:
    sink = MemorySink()
    ch = channel(tmp_path)
    fields = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered", "AccountSid": SID, "From": OURS, "To": ANN}
    response = await ch.webhook(request(fields, path="status"), sink)
    assert response.status == 200
    assert sink.threads and threading.get_ident() not in sink.threads  # the store is written off the event loop
    forged = await ch.webhook(request({**fields, "MessageStatus": "failed"}, path="status", token="0" * 32), sink)
    assert forged.status == 403
    assert sink.statuses == [("twilio", "SM" + "9" * 32, "delivered")]
    assert sink.accepted == []


@pytest.mark.parametrize(("ours", "them", "status"), [(OURS, ANN, "delivered"),
                                                     (f"whatsapp:{OURS}", f"whatsapp:{ANN}", "read")])
async def test_a_status_callback_sent_to_the_message_webhook_is_taken_as_one(tmp_path: Path, ours: str, them: str,
                                                                             status: str) -> None:
    """A Messaging Service or WhatsApp sender whose status callback URL is the message webhook (one URL pasted in
    both of Twilio's fields, or status_callbacks: false) had each delivery report and read receipt refused with a
    404 saying the recipient 'is not one of agent helper's numbers': Twilio's debugger filled with 11200 errors
    and the console never saw a reply delivered or read. Taken as a status callback: recorded, never answered."""
    sink = MemorySink()
    ch = channel(tmp_path)
    report = {"MessageSid": "SM" + "9" * 32, "SmsSid": "SM" + "9" * 32, "MessageStatus": status, "SmsStatus": status,
              "AccountSid": SID, "From": ours, "To": them, "ApiVersion": "2010-04-01"}
    response = await ch.webhook(request(report), sink)
    assert (response.status, response.body) == (200, "")
    assert sink.statuses == [("twilio", "SM" + "9" * 32, status)] and sink.accepted == [] and sink.ignored == []
    inbound = await ch.webhook(request(form(MessageStatus="received")), sink)  # a message that says 'received'
    assert inbound.status == 200 and [m.text for m in sink.accepted] == ["hello"]


async def test_a_number_whose_webhook_twilio_calls_with_get_is_answered(tmp_path: Path) -> None:
    """Twilio's console lets a number's "A message comes in" use GET: the message's fields come in the query, which
    the signature covers. Each such message was answered 405 ("Twilio webhooks are POST requests") after its
    signature had passed: never answered, nothing stored, nothing in the log but the access line."""
    sink = MemorySink()
    ch = channel(tmp_path)
    query = urlencode(form(Body="open on sunday?"))
    response = await ch.webhook(request({}, method="GET", query=query), sink)
    assert (response.status, response.body) == (200, EMPTY_TWIML)
    assert [(m.sender, m.text) for m in sink.accepted] == [(ANN, "open on sunday?")]
    report = urlencode({"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered", "AccountSid": SID,
                        "From": OURS, "To": ANN})
    assert (await ch.webhook(request({}, method="GET", path="status", query=report), sink)).status == 200
    assert sink.statuses == [("twilio", "SM" + "9" * 32, "delivered")]
    # the query is what is signed: a GET whose signature covers a body instead, or another query, is refused
    forged = request(form(Body="x"), method="GET", query=urlencode(form(Body="y")),
                     signed_url=f"{PUBLIC}/channels/twilio/helper?{urlencode(form(Body='y'))}")
    assert (await ch.webhook(forged, sink)).status == 403
    assert len(sink.accepted) == 1


async def test_other_paths_methods_and_bodies(tmp_path: Path) -> None:
    sink = MemorySink()
    ch = channel(tmp_path)
    assert (await ch.webhook(request(form(), method="PUT"), sink)).status == 405
    assert (await ch.webhook(request(form(), path="voice"), sink)).status == 404
    no_sid = {k: v for k, v in form().items() if k != "MessageSid"}
    assert (await ch.webhook(request(no_sid), sink)).status == 400
    assert sink.accepted == [] and sink.statuses == []


# -- configuration -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "expected"), [
    ({"account_sid": None}, "channels.twilio.account_sid: required field is missing"),
    ({"colour": "blue"}, "channels.twilio.colour: unknown field"),
    ({"account_sid": "SK123"}, "channels.twilio.account_sid: must be AC followed by 32 hex digits"),
    ({"auth_token": "0123456789abcdef0123456789abcdef"}, "channels.twilio.auth_token: names the secret"),
    ({"public_url": "bot.example.com"}, "channels.twilio.public_url: must be an http(s) URL"),
    ({"api_base": "ftp://x"}, "channels.twilio.api_base: must be an http(s) URL"),
    ({"numbers": []}, "channels.twilio.numbers: List should have at least 1 item"),
    ({"numbers": ["+1 555 000"]}, "channels.twilio.numbers: '+1 555 000' is not an address"),
    ({"numbers": ["15550001111"]}, "channels.twilio.numbers: '15550001111' is not an E.164 phone number like "
                                   "'+15550001111' ("),
    ({"numbers": [OURS, "whatsapp:1-555-000-1111"]},
     "channels.twilio.numbers: 'whatsapp:1-555-000-1111' is not an E.164 phone number like 'whatsapp:+15550001111'"),
    ({"allow_from": ["5557654321"]}, "channels.twilio.allow_from: '5557654321' is not an E.164 phone number"),
    ({"auth_token": "NOT_SET_ANYWHERE"}, "channels.twilio.auth_token: the secret NOT_SET_ANYWHERE is not set; "
                                         "export NOT_SET_ANYWHERE="),
])
def test_config_errors_are_one_line_naming_the_field(tmp_path: Path, overrides: dict[str, Any],
                                                     expected: str) -> None:
    settings = {k: v for k, v in config(**overrides).items() if v is not None}
    with pytest.raises(HalguruError) as err:
        TwilioChannel("helper", settings, tmp_path)
    assert str(err.value).startswith(f"agent helper: {expected}")
    assert "\n" not in str(err.value)


def test_registered_through_the_plugin_hook(tmp_path: Path) -> None:
    channels = load_channels("helper", {"twilio": config()}, tmp_path)
    assert isinstance(channels["twilio"], TwilioChannel)
    assert channels["twilio"].webhook_url == f"{PUBLIC}/channels/twilio/helper"


# -- replies -------------------------------------------------------------------------------------------------
def outbound(text: str, to: str = ANN, ours: str = OURS) -> Outbound:
    return Outbound(channel="twilio", agent="helper", conversation_id="c1", job_id="j1", text=text,
                    reply={"to": to, "from": ours})


async def test_send_replies_from_the_number_written_to(tmp_path: Path, fake: FakeTwilio) -> None:
    ch = channel(tmp_path, api_base=fake.url)
    sids = await ch.send(outbound("Hi Ann!", f"whatsapp:{ANN}", f"whatsapp:{OURS}"), MemoryOnce())
    [message] = fake.messages
    assert sids == [message["sid"]]
    assert (message["to"], message["from"], message["body"]) == (f"whatsapp:{ANN}", f"whatsapp:{OURS}", "Hi Ann!")
    assert message["status_callback"] == f"{PUBLIC}/channels/twilio/helper/status"
    quiet = channel(tmp_path, api_base=fake.url, status_callbacks=False)
    await quiet.send(outbound("again"), MemoryOnce())
    assert fake.messages[-1]["status_callback"] is None


async def test_long_answers_are_split_in_order_at_word_boundaries(tmp_path: Path, fake: FakeTwilio) -> None:
    text = "\n\n".join(" ".join(f"p{p}w{w}." if w % 9 == 8 else f"p{p}w{w}" for w in range(150)) for p in range(4))
    once = MemoryOnce()
    sids = await channel(tmp_path, api_base=fake.url).send(outbound(text), once)
    bodies = fake.bodies()
    assert len(bodies) == len(sids) >= 2 and all(len(b) <= 1600 for b in bodies)
    assert " ".join(bodies).split() == text.split()  # every word, in order, none cut
    assert once.sent == [f"part:{i}" for i in range(len(bodies))]


async def test_a_part_already_sent_is_not_sent_again(tmp_path: Path, fake: FakeTwilio) -> None:
    text = "A sentence that is long enough. " * 120  # ~3800 characters: three parts
    once = MemoryOnce()
    once.done["part:0"] = {"sid": "SMearlier", "status": "sent"}  # an earlier attempt sent the first part
    sids = await channel(tmp_path, api_base=fake.url).send(outbound(text), once)
    assert sids[0] == "SMearlier"
    assert len(fake.messages) == len(sids) - 1 == 2
    assert fake.bodies() == split_text(text, 1600)[1:]


@pytest.mark.parametrize("delivered", [True, False])
async def test_a_part_twilio_got_before_a_crash_is_found_not_resent(tmp_path: Path, fake: FakeTwilio,
                                                                    delivered: bool) -> None:
    """Twilio accepted part 1, then the connection died (as when a worker is killed before recording it): the
    retry finds it, sent already (the DateSent filter) or still queued (no date_sent yet), and sends the rest."""
    text = "Word " * 900  # three parts
    ch = channel(tmp_path, api_base=fake.url)
    once = MemoryOnce()
    fake.drop_next = 1  # accepted, but the answer is lost
    with pytest.raises(HalguruError, match=r"^twilio: part 1/3 to \+15557654321: cannot reach http://127"):
        await ch.send(outbound(text), once)
    assert len(fake.messages) == 1 and "part:0" in once.started and "part:0" not in once.done
    if delivered:
        fake.deliver()
    fake.requests.clear()
    sids = await ch.send(outbound(text), once)
    lookups = [path for method, path in fake.requests if method == "GET"]
    assert len(lookups) == (1 if delivered else 2)  # a queued message is missed by DateSent>, found in the newest
    assert fake.bodies() == split_text(text, 1600)  # each part once
    assert sids == [m["sid"] for m in fake.messages]
    assert once.done["part:0"]["found"] is True and once.sent == ["part:1", "part:2"]


async def test_an_earlier_identical_message_is_not_mistaken_for_this_part(tmp_path: Path, fake: FakeTwilio) -> None:
    ch = channel(tmp_path, api_base=fake.url)
    await ch.send(outbound("OK"), MemoryOnce())  # yesterday's "OK" (long before this attempt started)
    fake.messages[0]["date_created"] = "Mon, 30 Nov 2026 10:00:00 GMT"
    once = MemoryOnce()
    once.started["part:0"] = time.time()  # an attempt started and died before reaching Twilio
    await ch.send(outbound("OK"), once)
    assert fake.bodies() == ["OK", "OK"]


async def test_rest_errors_are_one_line(tmp_path: Path, fake: FakeTwilio) -> None:
    wrong_token = channel(tmp_path, api_base=fake.url)
    wrong_token._token = "0" * 32
    with pytest.raises(HalguruError, match=r"^twilio: part 1/1 to \+15557654321 failed: HTTP 401, error 20003"):
        await wrong_token.send(outbound("hi"), MemoryOnce())
    with pytest.raises(HalguruError, match="has no reply address"):
        await channel(tmp_path, api_base=fake.url).send(
            Outbound("twilio", "helper", "c1", "j1", "hi", {}), MemoryOnce())


async def test_an_empty_answer_sends_nothing(tmp_path: Path, fake: FakeTwilio) -> None:
    assert await channel(tmp_path, api_base=fake.url).send(outbound("  \n "), MemoryOnce()) == []
    assert fake.messages == []


# -- splitting -----------------------------------------------------------------------------------------------
def test_split_prefers_paragraphs_then_sentences_then_words() -> None:
    assert split_text("short", 10) == ["short"]
    assert split_text("aaaa bbbb\n\ncccc dddd", 12) == ["aaaa bbbb", "cccc dddd"]
    assert split_text("One two three. Four five.", 20) == ["One two three.", "Four five."]
    assert split_text("alpha beta gamma delta", 12) == ["alpha beta", "gamma delta"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]  # one word longer than a message
    # an emoji is two of SMS's code units: 1,000 of them (and words between) never make a part over 1,600
    emoji = " ".join("\U0001F600" * 5 for _ in range(200))
    parts = split_text(emoji, 1600)
    assert all(len(p.encode("utf-16-le")) // 2 <= 1600 for p in parts) and len(parts) == 2
    assert "".join(parts).replace(" ", "") == emoji.replace(" ", "")
    long = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 80).strip()
    parts = split_text(long, 1600)
    assert all(len(p) <= 1600 for p in parts) and " ".join(parts) == long
    assert all(p.endswith(".") for p in parts)  # cut after sentences, never mid-word
    # a boundary only in a part's first half is not taken: "You said:" went alone, a third paid message
    parts = split_text("You said: " + "\U0001F600" * 1000, 1600)
    assert len(parts) == 2 and parts[0].startswith("You said: \U0001F600")


async def test_api_base_holds_for_every_request_and_page(tmp_path: Path, fake: FakeTwilio,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """TWILIO_REGION/TWILIO_EDGE in the environment would make the client rewrite the host: the config wins.
    A lookup follows Twilio's next-page links, which are built on the same base."""
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    ch = channel(tmp_path, api_base=fake.url)
    for text in ("target", "one", "two", "three", "four"):
        await ch.send(outbound(text), MemoryOnce())
    fake.deliver()
    fake.page_size_cap = 2  # the target is on the third page of the newest-first list
    once = MemoryOnce()
    once.started["part:0"] = time.time() - 5  # an attempt that died after Twilio took "target"
    assert await ch.send(outbound("target"), once) == [fake.messages[0]["sid"]]
    assert len(fake.messages) == 5
    assert sum(1 for method, path in fake.requests if method == "GET" and "Page=" in path) >= 2


async def test_sms_opt_out_words_and_advanced_opt_out_keywords_are_not_answered(tmp_path: Path) -> None:
    """Twilio answers STOP itself and refuses every later message to the sender: the agent ran on "STOP" and its
    reply failed with error 21610, the job dead. Only whole-message keywords on SMS; Advanced Opt-Out's
    OptOutType names any keyword it answered (the operator's own words too). Each is recorded, not answered."""
    sink = MemorySink()
    ch = channel(tmp_path)
    keywords = [form(MessageSid=f"SM{i:032d}", Body=body, From=f"+1555000000{i}")
                for i, body in enumerate(["STOP", " stop\n", "Unsubscribe"])]
    keywords.append(form(MessageSid="SM" + "a" * 32, Body="ARRET", OptOutType="STOP", From="+15550000007"))
    keywords.append(form(MessageSid="SM" + "b" * 32, Body="Help", OptOutType="HELP"))
    for fields in keywords:
        response = await ch.webhook(request(fields), sink)
        assert (response.status, response.body) == (200, EMPTY_TWIML)
    assert sink.accepted == []
    assert [status for _, status in sink.ignored] == ["opted out"] * 4 + ["answered by Twilio"]
    assert sorted(sink.opt_outs.values()) == ["ARRET", "STOP", "STOP", "UNSUBSCRIBE"]
    answered = [form(MessageSid="SM" + "c" * 32, Body="stop sending me links"),
                form(MessageSid="SM" + "d" * 32, Body="yes"),  # an answer to the agent's question, most likely
                form(MessageSid="SM" + "e" * 32, Body="STOP", To=f"whatsapp:{OURS}", From=f"whatsapp:{ANN}")]
    for fields in answered:
        await ch.webhook(request(fields), sink)
    assert [m.text for m in sink.accepted] == ["stop sending me links", "yes", "STOP"]


async def test_a_sender_who_texted_stop_is_not_answered_until_they_opt_back_in(tmp_path: Path) -> None:
    """After STOP, the sender's next message (no START) ran the agent, and Twilio refused its reply with error
    21610. Now it is recorded unanswered; START, UNSTOP or YES opts them back in (Twilio confirms it itself),
    and only for the number they wrote to."""
    sink = MemorySink()
    ch = channel(tmp_path)
    said = ["STOP", "what time do you open?", "help", "Unstop", "what time do you open?", "stop", "yes"]
    for index, body in enumerate(said):
        await ch.webhook(request(form(MessageSid=f"SM{index:032d}", Body=body)), sink)
    await ch.webhook(request(form(MessageSid="SM" + "f" * 32, Body="hola", From=f"whatsapp:{ANN}",
                                  To=f"whatsapp:{OURS}")), sink)
    assert [m.text for m in sink.accepted] == ["what time do you open?", "hola"]
    assert sink.ignored == [("STOP", "opted out"), ("what time do you open?", "ignored: opted out (STOP)"),
                            ("help", "ignored: opted out (STOP)"), ("Unstop", "opted in"), ("stop", "opted out"),
                            ("yes", "opted in")]
    assert sink.opt_outs == {}
    await ch.webhook(request(form(MessageSid="SM" + "9" * 32, Body="STOP")), sink)
    await ch.webhook(request(form(MessageSid="SM" + "9" * 32, Body="STOP")), sink)  # Twilio's retry
    assert sink.opt_outs == {("twilio", "helper", OURS, ANN): "STOP"}


async def test_help_gets_the_configured_help_text_without_the_agent(tmp_path: Path) -> None:
    """help_text answers HELP and INFO (and Advanced Opt-Out's HELP); without it the agent answers them."""
    sink = MemorySink()
    ch = channel(tmp_path, help_text="Acme support: call +1 555 000 1111. Reply STOP to stop.")
    for index, body in enumerate(["HELP", " info ", "help me with my order"]):
        await ch.webhook(request(form(MessageSid=f"SM{index:032d}", Body=body)), sink)
    await ch.webhook(request(form(MessageSid="SM" + "a" * 32, Body="AIDE", OptOutType="HELP")), sink)
    assert [(m.text, m.answer) for m in sink.accepted] == [
        ("HELP", "Acme support: call +1 555 000 1111. Reply STOP to stop."),
        (" info ", "Acme support: call +1 555 000 1111. Reply STOP to stop."),
        ("help me with my order", ""), ("AIDE", "Acme support: call +1 555 000 1111. Reply STOP to stop.")]
    plain = MemorySink()
    await channel(tmp_path).webhook(request(form(Body="HELP")), plain)
    assert [(m.text, m.answer) for m in plain.accepted] == [("HELP", "")]


async def test_a_reply_twilio_refuses_as_opted_out_says_so(tmp_path: Path, fake: FakeTwilio) -> None:
    """A STOP that never reached us (sent before the number was this agent's): Twilio refuses with 21610."""
    fake.unsubscribed.add((OURS, ANN))
    with pytest.raises(ChannelError) as err:
        await channel(tmp_path, api_base=fake.url).send(outbound("hi"), MemoryOnce())
    assert (err.value.opted_out, err.value.permanent) == ("twilio error 21610", True)


async def test_a_sender_flooding_a_number_is_answered_max_answers_per_hour_times(tmp_path: Path) -> None:
    """Each of 100 messages from one sender was queued, run and answered: 100 model runs and 100 paid replies
    (or for ever, with another bot that answers every answer). Retries of a message count once; other senders
    are answered still; 0 is no limit."""
    sink = MemorySink()
    ch = channel(tmp_path)  # the default: 60
    for index in range(100):
        fields = form(MessageSid=f"SM{index:032d}", Body=f"spam {index}")
        for _ in range(2):  # and each retried by Twilio
            assert (await ch.webhook(request(fields), sink)).body == EMPTY_TWIML
    await ch.webhook(request(form(MessageSid="SM" + "f" * 32, From="+15551110000")), sink)
    assert [m.text for m in sink.accepted] == [f"spam {i}" for i in range(60)] + ["hello"]
    unlimited = channel(tmp_path, max_answers_per_hour=0)
    for index in range(100):
        await unlimited.webhook(request(form(MessageSid=f"SM{index + 200:032d}")), sink)
    assert len(sink.accepted) == 161


async def test_an_auto_responder_answering_each_answer_is_answered_three_times(tmp_path: Path) -> None:
    """A phone's "I'm driving" auto-reply answered each of our answers with itself: max_answers_per_hour let it go
    on at 60 paid runs and replies an hour, for ever. A long message said the same a fourth time in the hour is
    not answered; a person's short 'yes' again, or anything else they say, still is."""
    sink = MemorySink()
    ch = channel(tmp_path)
    driving = "I'm driving with Do Not Disturb on. I'll see your message when I get where I'm going."
    said = [driving] * 6 + ["yes"] * 5 + ["Sorry, that was my car. What time do you open?"]
    for index, body in enumerate(said):
        await ch.webhook(request(form(MessageSid=f"SM{index:032d}", Body=body)), sink)
    assert [m.text for m in sink.accepted] == [driving] * 3 + ["yes"] * 5 + [said[-1]]


async def test_a_refused_request_says_why_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A public_url other than the URL in Twilio's console (http for https, a trailing slash, the tunnel's own
    address) refused every message with a 403 and not a word in the log: the operator saw nothing. The log now
    names the URL Twilio signed; the caller still gets the one 403, and nothing is accepted."""
    sink = MemorySink()
    ch = channel(tmp_path)
    cases = [
        (request(form(), signed_url="http://bot.example.com/channels/twilio/helper"),
         "signed for http://bot.example.com/channels/twilio/helper, not for https://bot.example.com/channels/"),
        (request(form(), signed_url=f"{PUBLIC}/channels/twilio/helper/"),
         f"signed for {PUBLIC}/channels/twilio/helper/, not"),
        (request(form(), signed_url="https://abc123.ngrok.app/channels/twilio/helper",
                 headers={"host": "127.0.0.1:8000", "x-forwarded-host": "abc123.ngrok.app"}),
         "signed for https://abc123.ngrok.app/channels/twilio/helper, not"),
        (request(form(), token="0" * 32), "does not match https://bot.example.com/channels/twilio/helper: another "
                                          "auth token"),
        (request(form(), sign=False), "without X-Twilio-Signature"),
    ]
    for hook, said in cases:
        caplog.clear()
        with caplog.at_level("INFO", logger="halguru.channels.twilio"):
            assert (await ch.webhook(hook, sink)).status == 403
        [line] = [r.getMessage() for r in caplog.records]
        assert said in line and "\n" not in line, line
    assert sink.accepted == []


@pytest.mark.parametrize("seen", ["\U0001F1EB\U0001F1F7",  # a flag: two regional indicators
                                  "\U0001F44D\U0001F3FD",  # a thumbs up with a skin tone
                                  "\U0001F469\u200d\U0001F4BB",  # a woman technologist: two emoji and a joiner
                                  "e\u0301"])  # e and a combining acute accent
def test_a_word_longer_than_a_message_is_cut_between_characters_as_seen(seen: str) -> None:
    """Cut mid-word at 1,600 code units, a flag after an odd prefix went as a lone regional indicator at the end of
    one message and another at the start of the next (each a stray letter on the phone)."""
    text = "a" + seen * 1000
    parts = split_text(text, 1600)
    assert "".join(parts) == text and all(len(p.encode("utf-16-le")) // 2 <= 1600 for p in parts)
    for part in parts[1:]:
        assert part.startswith(seen), repr(part[:4])
    assert all(p.endswith(seen) for p in parts)


async def test_a_failed_delivery_is_logged_with_twilios_error_code(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The store keeps 'undelivered', not why: Twilio's ErrorCode (30007 carrier filtering, 63016 outside
    WhatsApp's 24-hour window) was in the callback alone, and dropped. It is logged in one line."""
    sink = MemorySink()
    ch = channel(tmp_path)
    fields = {"MessageSid": "SM" + "8" * 32, "MessageStatus": "undelivered", "ErrorCode": "30007",
              "AccountSid": SID, "From": OURS, "To": ANN}
    with caplog.at_level("INFO", logger="halguru.channels.twilio"):
        assert (await ch.webhook(request(fields, path="status"), sink)).status == 200
        assert (await ch.webhook(request({**fields, "MessageStatus": "delivered", "ErrorCode": ""},
                                         path="status"), sink)).status == 200
    [line] = [r.getMessage() for r in caplog.records]
    assert f"SM{'8' * 32} to {ANN} undelivered, error 30007 (https://www.twilio.com/docs/errors/30007)" in line
    assert [s[2] for s in sink.statuses] == ["undelivered", "delivered"]
    assert sink.errors == ["error 30007: filtered by the carrier as spam", None]  # kept with the message
    await ch.webhook(request({**fields, "ErrorCode": "21610"}, path="status"), sink)
    assert sink.errors[-1] == "error 21610: the recipient opted out (STOP)"
    assert sink.opt_outs == {("twilio", "helper", OURS, ANN): "twilio error 21610"}  # nothing more to them


async def test_an_api_base_that_is_not_twilio_is_one_line(tmp_path: Path) -> None:
    """api_base pointing at another server that answers 200 with HTML: each try failed with a JSONDecodeError
    traceback ('Expecting value: line 1 column 1'), naming neither Twilio nor the setting."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"<html><body>Welcome to nginx!</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(HalguruError) as err:
            await channel(tmp_path, api_base=base).send(outbound("hi"), MemoryOnce())
    finally:
        server.shutdown()
        server.server_close()
    assert str(err.value) == (f"twilio: part 1/1 to {ANN}: {base} answered with a body that is not Twilio's JSON; "
                              "is channels.twilio.api_base Twilio's API?")
    assert not getattr(err.value, "permanent", True)  # retried: a proxy's error page may be passing
