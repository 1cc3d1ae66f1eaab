"""The Twilio channel: SMS/MMS, WhatsApp, Facebook Messenger and RCS through Programmable Messaging.

Every product reaches us through the same webhook format (``From``/``To`` carry a ``whatsapp:``, ``messenger:``
or ``rcs:`` prefix; SMS has none) and is answered through the same REST resource, so one class serves them all.

Invariant: nothing reaches the sink unless the request's ``X-Twilio-Signature`` is valid, checked by Twilio's own
``RequestValidator`` against the URL Twilio was told to call: the configured ``public_url`` plus the route and
query. The Host header is never used: a proxy rewrites it, and an attacker chooses it.

The webhook answers at once with empty TwiML; the worker replies later through the REST API (``send``), each part
of a long answer through ``SendOnce``, so a retried job never sends a part twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, quote

from pydantic import BaseModel, ConfigDict, Field, field_validator

from halguru.channels.base import (
    NOT_SIGNED,
    REPEATS,
    ChannelError,
    Inbound,
    InboundSink,
    Outbound,
    SendOnce,
    WebhookRequest,
    WebhookResponse,
    answered_enough,
    http_url,
    parse_settings,
    repeating,
)
from halguru.errors import AgentSpecError, HalguruError

if TYPE_CHECKING:  # twilio ships no type information (no py.typed): its names are Any to mypy
    from twilio.rest import Client

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
DEFAULT_API_BASE = "https://api.twilio.com"
REQUEST_TIMEOUT = 30.0  # seconds per REST call: the official client waits for ever by default
# How far Twilio's clock (date_created) may lag ours when looking for a part an earlier attempt sent. Small on
# purpose: a wider window could mistake the same short answer sent earlier ("OK") for this part.
CLOCK_SKEW = timedelta(seconds=10)
MAX_MEDIA = 10  # media a Twilio message carries at most (MediaContentType0..9)
# The words Twilio takes as an SMS opt-out when one is a whole message (any case): it answers them itself and
# refuses every later message to the sender (error 21610) until they opt back in (help.twilio.com, "Twilio
# support for opt-out keywords (SMS STOP filtering)").
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})  # they opt back in (Twilio confirms it itself)
HELP_WORDS = frozenset({"HELP", "INFO"})
OPTED_OUT_ERROR = "21610"  # Twilio refusing a message to a sender who opted out ("unsubscribed recipient")
# What a failed delivery's ErrorCode means, for the console (www.twilio.com/docs/api/errors/CODE says more)
ERRORS = {"21610": "the recipient opted out (STOP)", "30003": "unreachable handset (off, or out of coverage)",
          "30004": "blocked by the recipient or their carrier", "30005": "unknown number (it does not exist)",
          "30006": "a landline, or a carrier that takes no SMS", "30007": "filtered by the carrier as spam",
          "30008": "unknown error at the carrier", "30034": "sent from a number not registered for A2P 10DLC",
          "63016": "outside WhatsApp's 24-hour window: only a template may be sent"}
log = logging.getLogger("halguru.channels.twilio")


@dataclass(frozen=True)
class Product:
    label: str  # for conversation titles
    limit: int  # the longest Body one message may carry


# Twilio's Messages resource takes a Body of at most 1,600 characters on every channel (error 21617/21658:
# "This limit applies to all Programmable Messaging channels, including SMS, MMS, WhatsApp, Facebook Messenger";
# support.twilio.com, "Maximum Message Length with Twilio Programmable Messaging"). Messenger itself allows 2,000
# and RCS 3,072, but not through Twilio; RCS also falls back to SMS, whose concatenated maximum is 1,600.
PRODUCTS: dict[str, Product] = {
    "": Product("SMS", 1600),
    "whatsapp": Product("WhatsApp", 1600),
    "messenger": Product("Messenger", 1600),
    "rcs": Product("RCS", 1600),
}


def product_of(address: str) -> Product:
    """The product an address belongs to, by its prefix ('whatsapp:+1555...'); SMS/MMS when none is known."""
    prefix, sep, _ = address.partition(":")
    return PRODUCTS.get(prefix.lower() if sep else "", PRODUCTS[""])


class TwilioConfig(BaseModel):
    """``channels: {twilio: {...}}`` in agent.yaml."""

    model_config = ConfigDict(extra="forbid")

    account_sid: str = Field(description="the account SID (AC followed by 32 hex digits)")
    auth_token: str = Field(description="the NAME of the secret holding the auth token (env var or keyring)")
    public_url: str = Field(description="the public base URL Twilio calls (https://bot.example.com)")
    numbers: list[str] = Field(min_length=1, description="our numbers and senders this agent answers on")
    allow_from: list[str] | None = Field(default=None, description="only these senders get an answer")
    api_base: str = Field(default=DEFAULT_API_BASE, description="Twilio's REST base URL")
    status_callbacks: bool = Field(default=True, description="ask Twilio to report each reply's delivery")
    max_answers_per_hour: int = Field(default=60, ge=0, description="per sender, counted in the store "
                                      "(every serve process); 0: no limit")
    help_text: str | None = Field(default=None, min_length=1, max_length=1600,
                                  description="the answer to HELP or INFO (carriers want contact details in it); "
                                              "without it, the agent answers them")

    @field_validator("account_sid")
    @classmethod
    def _sid(cls, value: str) -> str:
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", value):
            raise ValueError("must be AC followed by 32 hex digits (the Account SID on Twilio's console)")
        return value

    @field_validator("auth_token")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if re.fullmatch(r"[0-9a-fA-F]{32}", value):
            raise ValueError("names the secret that holds the token (e.g. TWILIO_AUTH_TOKEN), "
                             "not the token itself: never put the token in agent.yaml")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value):
            raise ValueError("must name a secret: an environment variable or keyring entry like TWILIO_AUTH_TOKEN")
        return value

    @field_validator("public_url", "api_base")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("numbers", "allow_from")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        for address in value or []:
            if not address or address != address.strip() or " " in address:
                raise ValueError(f"{address!r} is not an address like '+15550001111' or 'whatsapp:+15550001111'")
            prefix, sep, number = address.rpartition(":")
            if prefix.lower() in ("", "whatsapp") and not re.fullmatch(r"\+[1-9][0-9]{1,14}", number):
                # Twilio sends phone numbers in E.164 only: anything else would never match a message
                raise ValueError(f"{address!r} is not an E.164 phone number like '{prefix + sep}+15550001111' "
                                 "('+', country code, digits): Twilio sends numbers so, this one would never match")
        # a product's prefix as Twilio writes it ('whatsapp:'), whatever case the config has: compared as they are
        return None if value is None else [_lower_prefix(address) for address in value]


def _lower_prefix(address: str) -> str:
    """'WhatsApp:+1555...' as 'whatsapp:+1555...': a known product's prefix in lower case, the rest as it is."""
    prefix, sep, rest = address.partition(":")
    return f"{prefix.lower()}{sep}{rest}" if sep and prefix.lower() in PRODUCTS else address


def parse_config(agent: str, config: Mapping[str, Any]) -> TwilioConfig:
    """The validated config; a problem is one line naming the agent and the field."""
    return parse_settings(TwilioConfig, agent, "twilio", config)


class TwilioChannel:
    """One agent's Twilio senders: the webhook Twilio calls, and replies through the REST API."""

    name: ClassVar[str] = "twilio"

    def __init__(self, agent: str, config: Mapping[str, Any], folder: Path) -> None:
        from halguru.models.secrets import lookup_secret

        self.agent = agent
        self.config = parse_config(agent, config)
        token = lookup_secret(self.config.auth_token)
        if not token:
            name = self.config.auth_token
            raise AgentSpecError(
                f"agent {agent}: channels.twilio.auth_token: the secret {name} is not set; "
                f"export {name}=<auth token> or run `keyring set halguru {name}`")
        self._token = token
        # what Twilio is told to call, so what it signs: never derived from the request
        self.webhook_url = f"{self.config.public_url}/channels/twilio/{quote(agent, safe='')}"
        self.status_url = f"{self.webhook_url}/status"

    # -- inbound -------------------------------------------------------------------------------------------
    async def webhook(self, request: WebhookRequest, sink: InboundSink) -> WebhookResponse:
        """Twilio's message webhook ('') and status callbacks ('status', or a report sent to the message webhook),
        each checked before anything is read."""
        if not self.genuine(request):  # first: to an outsider, this webhook answers as one that is not there
            self._log_refusal(request)
            return WebhookResponse(403, NOT_SIGNED)
        if request.method.upper() not in ("POST", "GET"):
            return WebhookResponse(405, "Twilio webhooks are POST (or GET) requests")
        if request.path not in ("", "status"):
            return WebhookResponse(404, "not found")
        try:
            form = fields_of(request)
        except ValueError:
            return WebhookResponse(400, f"a query of over {MAX_QUERY_FIELDS} fields is no Twilio webhook")
        if request.path == "status" or is_status_report(form):
            return await self._status(form, sink)
        return await self._message(form, sink)

    def genuine(self, request: WebhookRequest) -> bool:
        """Whether Twilio signed this request (HMAC-SHA1 of our public URL, its query and a POST's form, with the
        auth token)."""
        signature = request.headers.get("x-twilio-signature", "")
        return bool(signature) and self._signed_for(self.signed_url(request), request)

    def signed_url(self, request: WebhookRequest, base: str | None = None) -> str:
        """The URL Twilio signs for this request: ``public_url`` (or ``base``), the route, the query."""
        url = (base or self.webhook_url) + (f"/{request.path}" if request.path else "")
        return f"{url}?{request.query}" if request.query else url

    def _signed_for(self, url: str, request: WebhookRequest) -> bool:
        from twilio.request_validator import RequestValidator

        signature = request.headers.get("x-twilio-signature", "")
        # a GET's fields are in the URL's query, signed with it; a body it may carry is no part of what Twilio sent
        params = dict(request.form) if request.method.upper() != "GET" else {}
        return bool(RequestValidator(self._token).validate(url, params, signature))

    def _log_refusal(self, request: WebhookRequest) -> None:
        """Why a request was refused, for the operator (the caller only gets the 403 every refusal gets): a
        ``public_url`` that is not what Twilio's console says refused every message without a word in the log."""
        expected = self.signed_url(request)
        if not request.headers.get("x-twilio-signature"):
            log.info("twilio webhook of %s: refused a request without X-Twilio-Signature (not from Twilio)",
                     self.agent)
            return
        # what Twilio may have been told instead: the other scheme, a trailing slash, the address the proxy or
        # tunnel in front of us forwarded (never accepted: only named, so the operator can set public_url)
        path, mark, query = expected.partition("?")
        candidates = [("http:" if expected.startswith("https:") else "https:") + expected.split(":", 1)[1],
                      f"{path}/{mark}{query}"]
        host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
        route = self.webhook_url.removeprefix(self.config.public_url)
        candidates += [self.signed_url(request, f"{scheme}://{host}{route}") for scheme in ("https", "http") if host]
        found = next((url for url in candidates if self._signed_for(url, request)), None)
        if found:
            log.warning("twilio webhook of %s: refused a request Twilio signed for %s, not for %s (public_url "
                        "%s): make public_url and the URL in Twilio's console the same", self.agent, found,
                        expected, self.config.public_url)
        else:
            log.warning("twilio webhook of %s: refused a request whose X-Twilio-Signature does not match %s: "
                        "another auth token (channels.twilio.auth_token), a body changed on the way, or another "
                        "URL in Twilio's console", self.agent, expected)

    async def _message(self, form: Mapping[str, str], sink: InboundSink) -> WebhookResponse:
        message_id = form.get("MessageSid") or form.get("SmsMessageSid") or ""
        sender, ours = form.get("From", ""), form.get("To", "")
        if not (message_id and sender and ours):
            return WebhookResponse(400, "not a Twilio message webhook: MessageSid, From and To are required")
        if ours not in self.config.numbers:
            return WebhookResponse(404, f"{ours} is not one of agent {self.agent}'s numbers (channels.twilio.numbers)")
        if not self.allowed(sender):  # quietly: nothing is stored for a sender this agent does not serve
            return WebhookResponse(200, EMPTY_TWIML, "text/xml")
        message = self.inbound(form)
        word = form.get("Body", "").strip().upper()[:40]  # the keyword as sent (ARRET, for Advanced Opt-Out's STOP)
        # the sink writes to the store: on a thread, so the server's event loop never waits for it
        await asyncio.to_thread(self._take, message, self.keyword(form), word, bool(form.get("OptOutType")), sink)
        return WebhookResponse(200, EMPTY_TWIML, "text/xml")

    def _take(self, message: Inbound, keyword: str | None, word: str, by_twilio: bool, sink: InboundSink) -> None:
        """Answer, or only record, one message. Twilio answers its keywords itself and refuses every message to a
        sender who sent STOP until they send START (error 21610): such a sender's messages are recorded, unanswered.
        A retry of the same MessageSid is taken as the first was (Twilio still gets the same answer): a message
        ignored as its sender had opted out stays ignored once they send START, and a STOP stays undone."""
        ours, sender = message.ours, message.sender
        if sink.seen(self.name, self.agent, message.message_id):
            log.info("twilio channel of %s: %s from %s is a retry of a message taken already", self.agent,
                     message.message_id, sender)
            return
        opted = sink.opted_out(self.name, self.agent, ours, sender)
        if keyword == "STOP":
            sink.set_opted_out(self.name, self.agent, ours, sender, word or keyword)
            status = "opted out"
        elif keyword == "START" and (opted or by_twilio):
            sink.set_opted_out(self.name, self.agent, ours, sender, None)
            status = "opted in"
        elif opted:
            status = f"ignored: opted out ({opted})"
        elif keyword == "HELP" and by_twilio and not self.config.help_text:
            status = "answered by Twilio"  # Advanced Opt-Out's own help text
        else:
            if not self._flooding(message, sink):
                help_text = self.config.help_text if keyword == "HELP" else None
                sink.accept(replace(message, answer=help_text) if help_text else message)
            return
        log.info("twilio channel of %s: %s from %s not answered: %s", self.agent, message.message_id, sender, status)
        sink.ignore(message, status)

    def _flooding(self, message: Inbound, sink: InboundSink) -> bool:
        """Whether the sender had ``max_answers_per_hour`` answers already, or sent this long message again and
        again (logged: a flood, or a robot's loop)."""
        if repeating(sink, self.name, self.agent, message.sender, message.text):
            log.warning("twilio channel of %s: not answering %s from %s: the same message %d times in the last "
                        "hour, each answered: an auto-responder?", self.agent, message.message_id, message.sender,
                        REPEATS)
            return True
        if not answered_enough(sink, self.name, self.agent, message.sender, self.config.max_answers_per_hour):
            return False
        log.warning("twilio channel of %s: not answering %s from %s: %d of their messages were answered in the "
                    "last hour (max_answers_per_hour): a flood, or a loop with a robot?", self.agent,
                    message.message_id, message.sender, self.config.max_answers_per_hour)
        return True

    @staticmethod
    def keyword(form: Mapping[str, str]) -> str | None:
        """STOP, START or HELP when the message is one of Twilio's keywords, else None. Advanced Opt-Out names the
        one it answered (``OptOutType``, the operator's own words included); else an SMS that is one of Twilio's
        default words as a whole message (any case): STOP and its kin, START/YES/UNSTOP, HELP/INFO. Twilio filters
        SMS/MMS only. Whether START or HELP goes unanswered is the caller's: 'yes' is usually an answer."""
        if form.get("OptOutType"):
            return form["OptOutType"].upper()
        if product_of(form.get("To", "")) is not PRODUCTS[""]:
            return None
        word = form.get("Body", "").strip().upper()
        return next((kind for kind, words in (("STOP", OPT_OUT_WORDS), ("START", OPT_IN_WORDS), ("HELP", HELP_WORDS))
                     if word in words), None)

    def allowed(self, sender: str) -> bool:
        """Whether ``allow_from`` (if any) lists the sender, with its product prefix or without it (a phone
        number listed once covers its SMS and WhatsApp)."""
        allow = self.config.allow_from
        return allow is None or sender in allow or sender.partition(":")[2] in allow

    def inbound(self, form: Mapping[str, str]) -> Inbound:
        """The message a webhook carries (its form already checked), for the sink."""
        sender, ours = form["From"], form["To"]
        product = product_of(ours)
        who = form.get("ProfileName") or sender.partition(":")[2] or sender
        return Inbound(
            channel=self.name,
            agent=self.agent,
            message_id=form.get("MessageSid") or form["SmsMessageSid"],
            sender=sender,
            # one conversation per sender and number of ours (a product's prefix is part of both)
            thread=f"{ours}|{sender}",
            text=message_text(form),
            reply={"to": sender, "from": ours},
            title=f"{product.label} from {who}",
            ours=ours,
        )

    async def _status(self, form: Mapping[str, str], sink: InboundSink) -> WebhookResponse:
        message_id = form.get("MessageSid") or form.get("SmsSid") or ""
        status = form.get("MessageStatus") or form.get("SmsStatus") or ""
        if not (message_id and status):
            return WebhookResponse(400, "not a Twilio status callback: MessageSid and MessageStatus are required")
        code = form.get("ErrorCode") or ""
        error = f"error {code}: {ERRORS[code]}" if code in ERRORS else f"error {code}" if code else None
        # an unknown SID (a message sent outside halguru) is still 200: Twilio has nothing to retry
        await asyncio.to_thread(sink.update_status, self.name, message_id, status, error)
        if code == OPTED_OUT_ERROR and form.get("From") and form.get("To"):  # nothing more to them from this number
            await asyncio.to_thread(sink.set_opted_out, self.name, self.agent, form["From"], form["To"],
                                    f"twilio error {code}")
        if status in ("failed", "undelivered"):
            log.warning("twilio channel of %s: %s to %s %s, error %s (https://www.twilio.com/docs/errors/%s)",
                        self.agent, message_id, form.get("To", "?"), status, code or "?", code or "?")
        return WebhookResponse(200, "")

    # -- outbound ------------------------------------------------------------------------------------------
    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        """The answer as one message per part (split at Twilio's Body limit), each part sent once; their SIDs."""
        to, ours = str(message.reply.get("to") or ""), str(message.reply.get("from") or "")
        if not (to and ours):
            raise HalguruError(f"twilio: job {message.job_id} has no reply address (to/from)")
        parts = split_text(message.text, product_of(ours).limit)
        client = self.client()
        try:
            sids = []
            for index, part in enumerate(parts):
                sender = _PartSender(self, client, to, ours, part, f"part {index + 1}/{len(parts)}")
                result = await once(f"part:{index}", sender.send, sender.find)
                sids.append(str(result["sid"]))
            return sids
        finally:
            session = getattr(client.http_client, "session", None)
            if session is not None:
                session.close()

    def client(self) -> Client:
        """The official REST client, pointed at ``api_base`` (one per reply: its requests session is not shared
        across threads)."""
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        client = Client(self.config.account_sid, self._token, http_client=TwilioHttpClient(timeout=REQUEST_TIMEOUT))
        # The Api domain's base_url is where every Messages URL (and next-page link) is built from; region and
        # edge would rewrite its host, and only this config says where Twilio is.
        client.api.base_url = self.config.api_base
        client.region = client.edge = None
        return client


class _PartSender:
    """Sends one part of a reply, or finds it at Twilio when an earlier attempt died after sending it."""

    def __init__(self, channel: TwilioChannel, client: Client, to: str, ours: str, body: str, what: str) -> None:
        self.channel, self.client, self.to, self.ours, self.body, self.what = channel, client, to, ours, body, what

    async def send(self) -> dict[str, Any]:
        options: dict[str, Any] = {"to": self.to, "from_": self.ours, "body": self.body}
        if self.channel.config.status_callbacks:
            options["status_callback"] = self.channel.status_url
        sent = await self._call(self.client.messages.create, **options)
        return {"sid": sent.sid, "status": sent.status}

    async def find(self, started: float) -> dict[str, Any] | None:
        """A message with this body from us to them, created since ``started`` (less the clock skew)."""
        since = datetime.fromtimestamp(started, UTC) - CLOCK_SKEW
        # DateSent> filters by day, and misses a message still queued (no date_sent yet): look at the newest
        # messages between us too
        day = since.replace(hour=0, minute=0, second=0, microsecond=0)
        for filters in ({"date_sent_after": day, "limit": 200}, {"limit": 50}):
            found = await self._call(self.client.messages.list, to=self.to, from_=self.ours, **filters)
            for candidate in found:
                created = candidate.date_created
                if candidate.body == self.body and created is not None and created >= since.replace(microsecond=0):
                    return {"sid": candidate.sid, "status": candidate.status, "found": True}
        return None

    async def _call(self, method: Callable[..., Any], **options: Any) -> Any:
        """The sync client on a thread (the event loop keeps serving); its failures as one line.

        Not twilio's AsyncTwilioHttpClient: its aiohttp session belongs to the event loop that made it and must
        be closed there, and it has no default timeout. A reply is a few requests, so a thread each costs
        nothing, and the synchronous client (requests) is the one Twilio's users run most."""
        from requests import RequestException
        from twilio.base.exceptions import TwilioRestException

        try:
            return await asyncio.to_thread(method, **options)
        except TwilioRestException as exc:
            code = f", error {exc.code}" if exc.code else ""
            # Twilio refused the message itself (a bad number, a blocked recipient, bad credentials): retrying
            # cannot help. Rate limits (429) and Twilio's own failures (5xx) are retried.
            raise ChannelError(f"twilio: {self.what} to {self.to} failed: HTTP {exc.status}{code}: {exc.msg}",
                               permanent=400 <= (exc.status or 0) < 500 and exc.status != 429,
                               opted_out=f"twilio error {exc.code}" if str(exc.code) == OPTED_OUT_ERROR else None
                               ) from None
        except RequestException as exc:
            raise ChannelError(f"twilio: {self.what} to {self.to}: cannot reach {self.channel.config.api_base}: "
                               f"{type(exc).__name__}") from None
        except json.JSONDecodeError:  # a success whose body is not JSON: another server at api_base (or a proxy's page)
            raise ChannelError(f"twilio: {self.what} to {self.to}: {self.channel.config.api_base} answered with "
                               "a body that is not Twilio's JSON; is channels.twilio.api_base Twilio's API?") from None


MAX_QUERY_FIELDS = 1000  # as serve's forms (a message has tens of fields; MMS ~60)


def fields_of(request: WebhookRequest) -> Mapping[str, str]:
    """What Twilio sent: a POST's form, or a GET's query (a number's webhook may be set to GET in Twilio's
    console); ValueError for a query of over ``MAX_QUERY_FIELDS`` fields."""
    if request.method.upper() != "GET":
        return request.form
    return dict(parse_qsl(request.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS))


def is_status_report(form: Mapping[str, str]) -> bool:
    """Whether a form Twilio sent is a delivery report (or a WhatsApp read receipt), not a message: one reaches the
    message webhook where a Messaging Service's or WhatsApp sender's status callback URL is that webhook's. A
    message carries no ``MessageStatus``, or 'received'."""
    return form.get("MessageStatus", "received") != "received"


def message_text(form: Mapping[str, str]) -> str:
    """What the agent reads: the body, plus a note of media and shared locations it cannot see."""
    text = form.get("Body", "")
    notes = []
    num_media = form.get("NumMedia") or "0"
    count = int(num_media) if num_media.isascii() and num_media.isdigit() else 0  # int('²') raises
    if count:
        types = [form.get(f"MediaContentType{i}", "") for i in range(min(count, MAX_MEDIA))]
        kinds = ", ".join(t for t in types if t)
        notes.append(f"[{count} attachment{'s' if count > 1 else ''}{': ' + kinds if kinds else ''}]")
    if form.get("Latitude") and form.get("Longitude"):
        notes.append(f"[location: {form['Latitude']}, {form['Longitude']}]")
    return "\n".join([text, *notes]).strip() if notes else text


_BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?…:;])\s+"), re.compile(r"\s+"))


def _units(text: str) -> int:
    """The length as SMS counts it (UTF-16 code units: an emoji is two), never less than Python's."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _fitting(text: str, limit: int) -> int:
    """How many of ``text``'s characters fit in ``limit`` code units."""
    units = 0
    for index, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int) -> list[str]:
    """Parts of at most ``limit`` characters, counted as SMS counts them (an emoji is two), cut at the last
    paragraph, line, sentence or word boundary that keeps a part at least half full (a word boundary
    anywhere, before cutting mid-word)."""
    rest = text.strip()
    parts: list[str] = []
    while _units(rest) > limit:
        cut, resume = _cut(rest, _fitting(rest, limit))
        parts.append(rest[:cut].rstrip())
        rest = rest[resume:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _cut(text: str, limit: int) -> tuple[int, int]:
    """Where the next part ends, and where the one after starts."""
    window = text[: limit + 1]  # a boundary just after a full part counts
    for pattern in _BOUNDARIES:  # in the part's second half, or a word is cut: a space at 9 of 800 units made
        matches = [m for m in pattern.finditer(window) if limit // 2 <= m.start() <= limit]  # a paid 9-unit SMS
        if matches:
            return matches[-1].start(), matches[-1].end()
    cut = _cluster_start(text, limit)  # one word longer than a message: cut it, between characters as seen
    return cut, cut


def _joins(ch: str) -> bool:
    """Whether ``ch`` belongs to the character before it: a combining mark (é as e + U+0301), a joiner, an
    emoji's variation selector, skin tone or tag (a subdivision flag)."""
    code = ord(ch)
    return (ch == "\u200d" or unicodedata.category(ch) in ("Mn", "Me", "Mc") or 0xFE00 <= code <= 0xFE0F
            or 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F)


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF  # a flag is two of these


def _cluster_start(text: str, index: int) -> int:
    """``index`` moved back to the start of the character a reader sees there (an emoji of several code points
    joined by U+200D, a flag, a letter and its accents), so a cut never splits one: a flag cut in two showed as
    two letters on each side. ``index`` itself when one such character is longer than a message."""
    start = index
    while 0 < start < len(text) and (_joins(text[start]) or text[start - 1] == "\u200d"):
        start -= 1
    if start < len(text) and _regional(text[start]):
        run = start
        while run > 0 and _regional(text[run - 1]):
            run -= 1
        start -= (start - run) % 2  # flags pair up from the start of their run
    return start or index

