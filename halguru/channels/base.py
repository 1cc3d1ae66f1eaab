"""What a messaging channel is: how a message gets in (a webhook or a polled source) and how a reply goes out.

The pipeline is the same for every channel: an inbound message is stored and queued once per agent (its
provider id and the agent are the job's idempotency key, so a provider's retries never start a second run), a
worker runs the agent in the conversation of that sender or thread, and the reply goes out once (``SendOnce``).
Channels are plugins: the ``register_channels`` hook registers a class per name; the built-in Twilio and email
channels use it too.

Nothing here knows HTTP frameworks: serve mode turns a request into a ``WebhookRequest`` and the channel's
``WebhookResponse`` back into a response, so a channel is testable without a server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from halguru.errors import HalguruError, a_kind

if TYPE_CHECKING:
    from pydantic import BaseModel


class ChannelError(HalguruError):
    """A channel could not deliver; ``permanent`` when retrying cannot help (the provider refused the message:
    an invalid number, a blocked recipient), so the worker does not retry it. ``opted_out``: the provider refused
    it because the recipient opted out (why, e.g. 'twilio error 21610'), which the store then remembers."""

    def __init__(self, message: str, *, permanent: bool = False, opted_out: str | None = None):
        super().__init__(message)
        self.permanent = permanent or opted_out is not None
        self.opted_out = opted_out


@dataclass(frozen=True)
class Inbound:
    """A message that arrived on a channel, for an agent."""

    channel: str  # the channel's registered name ('twilio', 'email')
    agent: str
    message_id: str  # the provider's id (Twilio MessageSid, email Message-ID): stored and queued once per agent
    sender: str  # who wrote it ('whatsapp:+15551234567', 'ann@example.com')
    thread: str  # which conversation it belongs to within the channel (the sender for SMS, an email thread)
    text: str
    reply: Mapping[str, Any] = field(default_factory=dict)  # what ``send`` needs to answer (JSON-safe)
    title: str = ""  # the conversation's title when this message starts one
    correspondent: str = ""  # where answers go when not to ``sender`` (email's Reply-To): what answers count by
    ours: str = ""  # the address of ours it was written to (a Twilio number): opt-outs are per it and the sender
    answer: str = ""  # a fixed answer to send instead of running the agent (a HELP keyword's help_text)
    length: int = 0  # the message's whole length when ``text`` was cut already (an email's), for the note said


@dataclass(frozen=True)
class Outbound:
    """The reply a worker sends for one inbound message."""

    channel: str
    agent: str
    conversation_id: str
    job_id: str
    text: str
    reply: Mapping[str, Any]  # ``Inbound.reply`` of the message being answered


@dataclass(frozen=True)
class WebhookRequest:
    """An HTTP request to ``/channels/{channel}/{agent}/{path}``, framework-free."""

    method: str
    path: str  # what follows the agent name ('' for the main webhook, 'status' for Twilio's callbacks)
    query: str  # the raw query string ('' when none)
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    form: Mapping[str, str]  # the url-encoded form fields (empty for other bodies)


@dataclass(frozen=True)
class WebhookResponse:
    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


class InboundSink(Protocol):
    """Where channels hand what arrives (implemented by the job pipeline). Its methods write to the store and
    block: async code calls them through ``asyncio.to_thread``, so the event loop never waits for the database."""

    def accept(self, message: Inbound) -> bool:
        """Store and queue the message for a reply; False when its id was already accepted (a retry)."""
        ...

    def update_status(self, channel: str, message_id: str, status: str, error: str | None = None) -> bool:
        """A provider's delivery report for a message we sent (``error``: why it failed, as the provider says);
        False for an unknown message."""
        ...

    def answered(self, channel: str, agent: str, correspondent: str, since: float, text: str | None = None) -> int:
        """How many messages of ``correspondent`` (``Inbound.correspondent``, else its sender) were accepted for
        ``agent`` on ``channel`` since ``since`` (epoch seconds), by every process answering it; only those
        saying ``text``, if given."""
        ...

    def opted_out(self, channel: str, agent: str, ours: str, sender: str) -> str | None:
        """Why ``sender`` opted out of what ``agent`` sends from ``ours`` (a keyword, a provider's refusal), or
        None: they did not (or opted back in)."""
        ...

    def set_opted_out(self, channel: str, agent: str, ours: str, sender: str, reason: str | None) -> bool:
        """Remember that the sender opted out (``reason``), or forget it (None); True when that changed something."""
        ...

    def seen(self, channel: str, agent: str, message_id: str) -> bool:
        """Whether the message with the provider's id ``message_id`` was taken already (accepted, or recorded
        unanswered): a provider's retry of it, to be taken as it was then, whatever was said since."""
        ...

    def reply_of(self, channel: str, agent: str, sent_id: str) -> Mapping[str, Any] | None:
        """What ``agent``'s message ``sent_id``, sent on ``channel``, answered: that message's ``Inbound.reply``;
        None for a message it did not send (or no longer knows)."""
        ...

    def ignore(self, message: Inbound, status: str) -> bool:
        """Record ``message`` in its thread's conversation with ``status`` ('opted out', ...) and answer nothing:
        the console shows what came and why it went unanswered. False for a retry of one recorded already."""
        ...


class SendOnce(Protocol):
    """Performs one side effect of a job at most once across its retries.

    ``key`` names the effect within the job ('part:0'). When an earlier attempt finished it, its recorded
    value comes back and ``send`` is not called; when an earlier attempt started it and died (the outcome
    unknown), ``find(started)`` is asked first (did the provider get it after ``started``?) and its answer,
    if not None, is recorded instead of sending again. What ``send`` gives is any JSON value (the provider's
    id, a dict, None: given back as ``{}``); anything else is recorded as its text.
    """

    def __call__(self, key: str, send: Callable[[], Awaitable[Any]],
                 find: Callable[[float], Awaitable[Any | None]] | None = None) -> Awaitable[Any]: ...


@runtime_checkable
class Channel(Protocol):
    """One channel configured for one agent (``channels: {name: {...}}`` in agent.yaml).

    ``__init__(agent, config, folder)`` validates the config (raise ``halguru.errors.HalguruError`` with one
    line naming the bad field) and reads its secrets. A channel implements ``webhook`` (messages pushed to
    serve mode), ``source`` (messages the worker fetches, like an IMAP inbox), or both, and ``send``.
    """

    name: ClassVar[str]

    def __init__(self, agent: str, config: Mapping[str, Any], folder: Path) -> None: ...

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        """Deliver the reply (split as the provider's limits require), each part through ``once``; the
        provider ids of the parts."""
        ...


NOT_SIGNED = "the request has no valid signature for this webhook"
"""A webhook's refusal of a request it cannot authenticate, and the server's answer for a webhook that is not
there: the same 403, so nobody outside can tell which agents have which channels."""


@runtime_checkable
class WebhookChannel(Channel, Protocol):
    async def webhook(self, request: WebhookRequest, sink: InboundSink) -> WebhookResponse:
        """Check the request is genuine (before anything is written) and hand its message to ``sink``."""
        ...


@dataclass(frozen=True)
class SourceStatus:
    """How a fetching channel's connection stands (``status`` of a source channel, shown by /status and the
    ``halguru_channel_up`` gauge): an inbox that is down or refuses its password was only in the log."""

    ok: bool
    detail: str
    since: float = field(default_factory=time.time)


@runtime_checkable
class SourceChannel(Channel, Protocol):
    async def source(self, sink: InboundSink) -> None:
        """Fetch messages for ever (the worker runs this as a task and cancels it to stop); each message is
        handed to ``sink`` before it is marked processed at the provider, so a crash never loses one."""
        ...


ANSWER_WINDOW = 3600.0
"""``max_answers_per_hour`` counts the messages answered for one correspondent this long back."""


def answered_enough(sink: InboundSink, channel: str, agent: str, correspondent: str, limit: int) -> bool:
    """Whether ``limit`` messages of ``correspondent`` were accepted in the last hour (0: no limit), counted in the
    store: every process answering the channel, before and after a restart. Checking and accepting are two
    transactions: two processes taking two of their messages at the same instant may answer one more."""
    return bool(limit) and sink.answered(channel, agent, correspondent, time.time() - ANSWER_WINDOW) >= limit


REPEATS = 3
"""Answers to one long message said again and again (an auto-responder: "I'm driving, I'll see your message
later") in ``ANSWER_WINDOW``: the next one like it is not answered."""
REPEAT_MIN_CHARS = 20  # shorter ones ('yes', 'ok', 'thanks') a person says again in earnest


def repeating(sink: InboundSink, channel: str, agent: str, correspondent: str, text: str) -> bool:
    """Whether ``correspondent`` sent ``text`` (a long one) ``REPEATS`` times in the last hour, each answered:
    a robot answering each of our answers, which ``max_answers_per_hour`` only slows (60 paid runs and replies
    an hour, for ever)."""
    return len(text.strip()) >= REPEAT_MIN_CHARS and sink.answered(
        channel, agent, correspondent, time.time() - ANSWER_WINDOW, text) >= REPEATS


ChannelClass = Callable[[str, Mapping[str, Any], Path], Channel]
Config = TypeVar("Config", bound="BaseModel")


def parse_settings(model: type[Config], agent: str, channel: str, config: Mapping[str, Any]) -> Config:
    """A channel's settings validated by its pydantic ``model``; a problem is one line naming the agent and the
    field (``channels.twilio.numbers: ...``; ``halguru validate`` adds the file and line)."""
    from pydantic import ValidationError

    from halguru.errors import AgentSpecError

    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = {"extra_forbidden": "unknown field", "missing": "required field is missing"}.get(
            err["type"], str(err["msg"]).removeprefix("Value error, "))
        raise AgentSpecError(f"agent {agent}: channels.{channel}.{field}: {message}") from None


def channel_secret(agent: str, channel: str, field: str, name: str, what: str) -> str:
    """The value of the secret a channel's setting names (an environment variable, else the keyring); one line
    saying how to set it when it is not."""
    from halguru.errors import AgentSpecError
    from halguru.models.secrets import lookup_secret

    value = lookup_secret(name)
    if not value:
        raise AgentSpecError(f"agent {agent}: channels.{channel}.{field}: the secret {name} is not set; "
                             f"export {name}=<{what}> or run `keyring set halguru {name}`")
    return value


TITLE_CHARS = 60


def title_line(text: str) -> str:
    """A message as a conversation's title: one line of at most ``TITLE_CHARS``."""
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[:TITLE_CHARS - 1].rstrip() + "…"


class RateLimited(Exception):
    """A provider's 429, to be waited out ``wait`` seconds (within one try) or left to the job's retry."""

    def __init__(self, wait: float) -> None:
        self.wait = wait


RATE_LIMIT_WAIT = 30.0  # the longest wait taken within one try; a longer one is the job's retry
RATE_LIMIT_TRIES = 3
Result = TypeVar("Result")


async def waiting_out(call: Callable[[], Awaitable[Result]], what: str, wait_is: str) -> Result:
    """``call``, again after each ``RateLimited`` wait (up to ``RATE_LIMIT_TRIES`` tries, waits of at most
    ``RATE_LIMIT_WAIT``); past those, a ``ChannelError`` the job retries. ``what``: the call, for the log and the
    error ('slack: part 1/2 to C0123'); ``wait_is``: how the provider names its wait ('Retry-After')."""
    import asyncio

    for attempt in range(1, RATE_LIMIT_TRIES + 1):
        try:
            return await call()
        except RateLimited as limited:
            if attempt == RATE_LIMIT_TRIES or limited.wait > RATE_LIMIT_WAIT:
                raise ChannelError(f"{what}: rate limited (HTTP 429, {wait_is} {limited.wait:g} s)") from None
            logging.getLogger("halguru.channels").info("%s rate limited; trying again in %g s", what, limited.wait)
            await asyncio.sleep(limited.wait)
    raise AssertionError("unreachable")


def too_many(sink: InboundSink, message: Inbound, limit: int) -> str | None:
    """Why ``message`` is not answered (its sender's same long text ``REPEATS`` times, or ``limit`` answers in the
    last hour), said in a warning line; None: it may be."""
    if repeating(sink, message.channel, message.agent, message.sender, message.text):
        why = f"the same message {REPEATS} times in the last hour, each answered: another bot?"
    elif answered_enough(sink, message.channel, message.agent, message.sender, limit):
        why = f"{limit} of their messages were answered in the last hour (max_answers_per_hour)"
    else:
        return None
    logging.getLogger("halguru.channels").warning("%s channel of %s: not answering %s from %s: %s", message.channel,
                                                  message.agent, message.message_id, message.sender, why)
    return why


def http_url(value: str) -> str:
    """A provider's base URL as a setting: http(s), a host, no query or fragment; without its trailing slash."""
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"must be an http(s) URL without query or fragment, not {value!r}")
    return value.rstrip("/")


def source_statuses(channels: Mapping[str, Mapping[str, Channel]]) -> list[tuple[str, str, SourceStatus | None]]:
    """(agent, channel, status) of every fetching channel (None: not connected yet, or no status kept)."""
    return [(agent, name, getattr(channel, "status", None)) for agent, named in channels.items()
            for name, channel in named.items() if isinstance(channel, SourceChannel)]


def channel_classes(owners: dict[str, str] | None = None) -> dict[str, ChannelClass]:
    """Channel name -> class, from the ``register_channels`` plugin hook (built-in channels included); a name is
    its first plugin's, built-in ones first, with a warning naming both. ``owners`` gets each name's plugin."""
    from halguru.plugins.manager import registered

    return registered("register_channels", "channel", lambda name, cls: (name, cls), owners)


def load_channels(agent: str, configs: Mapping[str, Mapping[str, Any]], folder: Path) -> dict[str, Channel]:
    """The agent's ``channels:`` section as channel objects; an unknown name is one line with the known ones, and
    so is a channel whose constructor fails otherwise than with its HalguruError (a plugin's ``config["url"]``
    raising KeyError was a traceback naming neither the agent, the channel nor the plugin)."""
    from halguru.errors import exception_line

    owners: dict[str, str] = {}
    classes = channel_classes(owners)
    channels: dict[str, Channel] = {}
    for name, config in configs.items():
        cls = classes.get(name)
        if cls is None:
            known = ", ".join(sorted(classes)) or "none"
            raise HalguruError(f"agent {agent}: unknown channel {name!r} in channels: (known: {known})")
        try:
            channels[name] = cls(agent, config or {}, folder)
        except HalguruError:
            raise
        except Exception as exc:
            raise HalguruError(f"agent {agent}: channel {name!r} (plugin {owners[name]!r}) failed to start: "
                               f"{exception_line(exc)}") from None
        _check_channel(channels[name], name, f"agent {agent}: channel {name!r} (plugin {owners[name]!r})")
    return channels


def _check_channel(channel: Any, name: str, who: str) -> None:
    """A channel object has ``send``: one without passed ``validate`` and then had its every reply fail (one may
    lack ``webhook`` and ``source``: the tests' queue its messages themselves). A ``name`` it lacks is its
    registered one: the ``Channel`` protocol checks wanted one, and refused its webhook without a word."""
    if not callable(getattr(channel, "send", None)):
        what = "it has" if hasattr(channel, "webhook") or hasattr(channel, "source") else \
            f"it gave {a_kind(channel)}, which has"
        raise HalguruError(f"{who} is not a channel: {what} no send(message, once)")
    if not isinstance(getattr(channel, "name", None), str):
        channel.name = name
