"""The Slack channel: an app's Events API webhook in, ``chat.postMessage`` out, with the official ``slack-sdk``.

Invariant: nothing reaches the sink unless the request carries a valid ``X-Slack-Signature`` over its timestamp and
body, checked by slack_sdk's own ``SignatureVerifier`` with the app's signing secret (a timestamp over 5 minutes
from our clock is refused: a captured request cannot be sent again later).

A message is answered where it was written: a mention (``app_mention``) in a channel, in its thread; a direct
message (``message`` with ``channel_type: im``), in the DM. One conversation per workspace, channel and thread
root, so a thread is one conversation and a DM is one. The webhook answers at once (Slack retries a request not
answered within 3 seconds); the message is stored and queued once per workspace, channel and ``ts``, so Slack's
retries, and the ``message`` event Slack also sends for a mention (``answer: all``), never start a second run.
Bots' messages (ours included) and message subtypes (edits, deletions, joins) are never answered: no loops.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from halguru.channels.base import (
    NOT_SIGNED,
    ChannelError,
    Inbound,
    InboundSink,
    Outbound,
    RateLimited,
    SendOnce,
    WebhookRequest,
    WebhookResponse,
    channel_secret,
    http_url,
    parse_settings,
    title_line,
    too_many,
    waiting_out,
)
from halguru.errors import HalguruError

if TYPE_CHECKING:
    from slack_sdk import WebClient

DEFAULT_API_URL = "https://slack.com/api"
REQUEST_TIMEOUT = 30  # seconds per Web API call
# chat.postMessage truncates text past 40,000 characters and Slack asks for at most 4,000 per message
# (docs.slack.dev, chat.postMessage, "Truncating content"): a longer answer goes as several messages, in order.
TEXT_LIMIT = 4000
CLOCK_SKEW = 10.0  # seconds Slack's clock may lag ours, looking for a part an earlier attempt posted
# Slack's errors that another try cannot mend: the message (or the app) is refused as it is. Others (ratelimited,
# internal_error, fatal_error, service_unavailable, request_timeout, an HTTP 5xx) are tried again.
PERMANENT = {
    "channel_not_found": "the channel does not exist or the app cannot see it",
    "not_in_channel": "the app is not a member of the channel: invite it (/invite @app)",
    "is_archived": "the channel is archived",
    "invalid_auth": "the bot token is not valid (channels.slack.bot_token)",
    "not_authed": "no bot token was sent",
    "account_inactive": "the bot token belongs to a deleted app or user: reinstall the app",
    "token_revoked": "the bot token was revoked: reinstall the app",
    "token_expired": "the bot token expired",
    "missing_scope": "the app lacks the chat:write scope: add it and reinstall the app",
    "no_permission": "the app may not post there",
    "restricted_action": "the workspace does not let the app post there",
    "restricted_action_read_only_channel": "the channel is read-only",
    "restricted_action_thread_only_channel": "the channel takes replies in threads only",
    "restricted_action_non_threadable_channel": "the channel takes no threads",
    "cannot_reply_to_message": "the message cannot be replied to",
    "team_access_not_granted": "the app is not installed in this workspace",
    "ekm_access_denied": "the workspace's keys (EKM) refused it",
    "msg_too_long": "the message is too long",
    "no_text": "the message is empty",
    "invalid_arguments": "Slack refused the request's arguments",
}
log = logging.getLogger("halguru.channels.slack")

_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ID = re.compile(r"[UWTEB][A-Z0-9]{2,}")  # user ids (U, W for Enterprise Grid), team ids (T, E for an org)


class SlackConfig(BaseModel):
    """``channels: {slack: {...}}`` in agent.yaml."""

    model_config = ConfigDict(extra="forbid")

    bot_token: str = Field(description="the NAME of the secret holding the bot token (xoxb-...)")
    signing_secret: str = Field(description="the NAME of the secret holding the app's signing secret")
    allow_from: list[str] | None = Field(default=None, description="only these user ids (U...) or workspace ids "
                                                                   "(T...) get an answer")
    reply_in_thread: bool = Field(default=True, description="answer a mention in a channel in its thread")
    answer: Literal["mentions", "all"] = Field(default="mentions", description="in channels, answer only when "
                                               "mentioned, or every message (direct messages are always answered)")
    api_url: str = Field(default=DEFAULT_API_URL, description="Slack's Web API (Slack GovCloud: "
                                                              "https://slack-gov.com/api; a test server)")
    max_answers_per_hour: int = Field(default=60, ge=0, description="per user, counted in the store; 0: no limit")

    @field_validator("bot_token", "signing_secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if value.startswith(("xoxb-", "xoxp-", "xapp-", "xoxe")) or re.fullmatch(r"[0-9a-f]{32}", value):
            raise ValueError("names the secret that holds it (e.g. SLACK_BOT_TOKEN), not the secret itself: "
                             "never put a token in agent.yaml")
        if not _SECRET_NAME.fullmatch(value):
            raise ValueError("must name a secret: an environment variable or keyring entry like SLACK_BOT_TOKEN")
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("allow_from")
    @classmethod
    def _ids(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            if not _ID.fullmatch(entry):
                raise ValueError(f"{entry!r} is not a Slack user id (U0123ABCD, W...) or workspace id (T0123ABCD, "
                                 "E...): Slack sends ids, so a name or an @handle would never match")
        return value


def parse_config(agent: str, config: Mapping[str, Any]) -> SlackConfig:
    """The validated config; a problem is one line naming the agent and the field."""
    return parse_settings(SlackConfig, agent, "slack", config)



class SlackChannel:
    """One agent's Slack app: the Events API webhook Slack calls, and replies through ``chat.postMessage``."""

    name: ClassVar[str] = "slack"

    def __init__(self, agent: str, config: Mapping[str, Any], folder: Path) -> None:
        self.agent = agent
        self.config = parse_config(agent, config)
        self._token = channel_secret(agent, "slack", "bot_token", self.config.bot_token, "bot token, xoxb-...")
        self._signing_secret = channel_secret(agent, "slack", "signing_secret", self.config.signing_secret,
                                              "signing secret")

    # -- inbound -------------------------------------------------------------------------------------------
    async def webhook(self, request: WebhookRequest, sink: InboundSink) -> WebhookResponse:
        """Slack's Events API requests, each checked before anything is read."""
        if not self.genuine(request):  # first: to an outsider, this webhook answers as one that is not there
            log.warning("slack webhook of %s: refused a request %s", self.agent, self._why_refused(request))
            return WebhookResponse(403, NOT_SIGNED)
        if request.method.upper() != "POST" or request.path:
            return WebhookResponse(404, "Slack's Events API posts to the webhook itself")
        try:
            payload = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return WebhookResponse(400, "not an Events API request: the body is not JSON")
        if not isinstance(payload, dict):
            return WebhookResponse(400, "not an Events API request: the body is not a JSON object")
        if payload.get("type") == "url_verification":  # Slack checking the Request URL: its challenge back
            return WebhookResponse(200, str(payload.get("challenge", "")))
        if payload.get("type") != "event_callback" or not isinstance(payload.get("event"), dict):
            return WebhookResponse(200, "")  # app_rate_limited and other notices: nothing to answer
        message = self.inbound(payload)
        if message is not None:
            await asyncio.to_thread(self._take, message, sink, self.follow_up_of(payload))
        return WebhookResponse(200, "")

    def genuine(self, request: WebhookRequest) -> bool:
        """Whether Slack signed this request (v0 HMAC-SHA256 of the timestamp and body with the signing secret)
        in the last 5 minutes."""
        from slack_sdk.signature import SignatureVerifier

        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not (timestamp.isascii() and timestamp.isdigit() and signature.isascii() and signature):
            return False  # the verifier's int() and compare_digest raise on these
        return SignatureVerifier(self._signing_secret).is_valid(request.body, timestamp, signature)

    def _why_refused(self, request: WebhookRequest) -> str:
        """Why, for the operator's log (the caller only gets the 403 every refusal gets)."""
        import time

        timestamp = request.headers.get("x-slack-request-timestamp", "")
        if not request.headers.get("x-slack-signature") or not timestamp:
            return "without X-Slack-Signature and X-Slack-Request-Timestamp (not from Slack)"
        if timestamp.isascii() and timestamp.isdigit() and abs(time.time() - int(timestamp)) > 300:
            return (f"whose timestamp is {int(time.time() - int(timestamp))} s from this server's clock (over 5 "
                    "minutes: a replayed request, or a clock that is off)")
        return ("whose X-Slack-Signature does not match: another signing secret (channels.slack.signing_secret: "
                "the app's Basic Information page), or a body changed on the way")

    def inbound(self, payload: Mapping[str, Any]) -> Inbound | None:
        """The message an event carries, when it is one to answer (else None, logged)."""
        event: Mapping[str, Any] = payload["event"]
        kind, channel_type = event.get("type"), event.get("channel_type", "")
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        # the workspace the event came to keys the thread; the sender's own (another organization's, in a Slack
        # Connect channel) is only for allow_from: a thread is one conversation whoever writes in it
        team = str(payload.get("team_id") or event.get("team") or "")
        their_team = str(event.get("user_team") or event.get("team") or team)
        bot = _bot_user(payload)
        why = None
        if event.get("bot_id") or event.get("bot_profile") or (bot and user == bot):
            why = "a bot's message (ours or another app's)"
        elif event.get("subtype") not in (None, "file_share", "thread_broadcast"):
            why = f"a {event.get('subtype')} (only new messages are answered)"
        elif not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
            why = "an event without user, channel and ts"
        elif kind == "message" and channel_type != "im" and self.config.answer != "all" and not (
                isinstance(event.get("thread_ts"), str) and event.get("thread_ts") != ts):
            why = "a message in a channel that does not mention the app (answer: mentions)"
        elif kind not in ("message", "app_mention"):
            why = f"a {kind} event"
        elif not self.allowed(user, their_team):  # quietly: nothing is stored for a sender this agent does not serve
            why = "from a user outside allow_from"
        if why:
            log.info("slack channel of %s: not answering %s", self.agent, why)
            return None
        assert isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)
        text = _plain_text(str(event.get("text") or ""), bot)
        files = event.get("files")
        if isinstance(files, list) and files:
            names = ", ".join(str(f.get("name") or "?") for f in files if isinstance(f, dict))
            text = f"{text}\n[{len(files)} file{'s' if len(files) > 1 else ''}: {names}]".strip()
        thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
        direct = channel_type == "im" or channel.startswith("D")
        # a DM is one conversation; in a channel each thread is one (a message outside a thread roots its own)
        thread = f"{team}:{channel}" if direct else f"{team}:{channel}:{thread_ts or ts}"
        answer_in = thread_ts or (ts if self.config.reply_in_thread and not direct else None)
        where = "DM" if direct else f"<#{channel}>"
        return Inbound(
            channel=self.name, agent=self.agent,
            message_id=f"{team}:{channel}:{ts}",  # a retry, and a mention's message event, are the same message
            sender=user, thread=thread, text=text,
            reply={"channel": channel, **({"thread_ts": answer_in} if answer_in else {})},
            title=f"Slack {where}: {title_line(text)}",
        )

    def allowed(self, user: str, team: str) -> bool:
        allow = self.config.allow_from
        return allow is None or user in allow or (bool(team) and team in allow)

    def follow_up_of(self, payload: Mapping[str, Any]) -> str | None:
        """For a message in a channel's thread that does not mention the app (``answer: mentions``; Slack sends
        these with ``message.channels``): the message id of the thread's root, which it is answered after only
        when the root was a mention the app took (a thread begun by asking the app goes on without naming it)."""
        event: Mapping[str, Any] = payload["event"]
        if event.get("type") != "message" or self.config.answer == "all" or event.get("channel_type") == "im":
            return None
        team = str(payload.get("team_id") or event.get("team") or "")
        return f"{team}:{event.get('channel')}:{event.get('thread_ts')}"

    def _take(self, message: Inbound, sink: InboundSink, follow_up_of: str | None = None) -> None:
        if sink.seen(self.name, self.agent, message.message_id):
            log.info("slack channel of %s: %s is a retry of a message taken already", self.agent, message.message_id)
            return
        if follow_up_of and not sink.seen(self.name, self.agent, follow_up_of):
            log.info("slack channel of %s: not answering %s: a message in a thread that did not begin by mentioning "
                     "the app (answer: mentions)", self.agent, message.message_id)
            return
        if not too_many(sink, message, self.config.max_answers_per_hour):
            sink.accept(message)

    # -- outbound ------------------------------------------------------------------------------------------
    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        """The answer as one message per part (split at ``TEXT_LIMIT``), each part sent once, in order; their
        ids (channel:ts)."""
        from halguru.channels.twilio import split_text

        channel = str(message.reply.get("channel") or "")
        if not channel:
            raise HalguruError(f"slack: job {message.job_id} has no channel to answer in")
        thread_ts = message.reply.get("thread_ts")
        parts = split_text(message.text, TEXT_LIMIT)
        client = self.client()
        sent = []
        for index, part in enumerate(parts):
            what = f"part {index + 1}/{len(parts)}"

            async def post(part: str = part, what: str = what) -> dict[str, Any]:
                return await self._post(client, channel, part, thread_ts, what)

            async def find(started: float, part: str = part, what: str = what) -> dict[str, Any] | None:
                return await self._find(client, channel, part, thread_ts, what, started)

            result = await once(f"part:{index}", post, find)
            sent.append(f"{result['channel']}:{result['ts']}")
        return sent

    async def _find(self, client: WebClient, channel: str, text: str, thread_ts: Any, what: str,
                    started: float) -> dict[str, Any] | None:
        """The part an earlier attempt sent when it died before recording it (a bot's message with this text,
        posted since ``started`` less the clock skew), so it is not posted twice; None: not there, or the app
        may not read the channel (no channels:history / groups:history / im:history scope): sent again."""
        oldest = f"{started - CLOCK_SKEW:.6f}"
        try:
            if thread_ts:
                found = await self._call(client.conversations_replies, what, channel, channel=channel,
                                         ts=str(thread_ts), oldest=oldest, limit=200)
            else:
                found = await self._call(client.conversations_history, what, channel, channel=channel,
                                         oldest=oldest, limit=200)
        except ChannelError as exc:
            if not exc.permanent:
                raise  # Slack unreachable: the job's next try looks again
            log.warning("slack channel of %s: cannot tell whether %s reached %s before the last try died (%s): "
                        "sending it again", self.agent, what, channel, exc)
            return None
        escaped = _escaped(text)
        for message in found.get("messages") or []:
            if message.get("bot_id") and message.get("text") == escaped and float(message.get("ts", 0)) >= (
                    started - CLOCK_SKEW):
                return {"channel": channel, "ts": str(message["ts"]), "found": True}
        return None

    def client(self) -> WebClient:
        """The official Web API client at ``api_url``, without its own retries: a retry is decided here (a
        429's Retry-After) or by the job, through ``SendOnce``."""
        from slack_sdk import WebClient

        return WebClient(token=self._token, base_url=f"{self.config.api_url}/", timeout=REQUEST_TIMEOUT,
                         retry_handlers=[])

    async def _post(self, client: WebClient, channel: str, text: str, thread_ts: Any, what: str) -> dict[str, Any]:
        options: dict[str, Any] = {"channel": channel, "text": _escaped(text), "unfurl_links": False}
        if thread_ts:
            options["thread_ts"] = str(thread_ts)
        response = await waiting_out(lambda: self._call(client.chat_postMessage, what, channel, **options),
                                     f"slack: {what} to {channel}", "Retry-After")
        return {"channel": str(response.get("channel") or channel), "ts": str(response.get("ts") or "")}

    async def _call(self, method: Callable[..., Any], what: str, where: str, **options: Any) -> Any:
        """The sync client on a thread; its failures as one line (``RateLimited`` for a 429)."""
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            return await asyncio.to_thread(method, **options)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error") or "") if isinstance(exc.response.data, dict) else ""
            if status == 429 or error == "ratelimited":
                raise RateLimited(_retry_after(exc.response.headers)) from None
            why = PERMANENT.get(error)
            detail = f"{error}: {why}" if why else (error.splitlines()[0][:200] if error else "no error given")
            raise ChannelError(f"slack: {what} to {where} failed: HTTP {status}, {detail}",
                               permanent=why is not None) from None
        except (SlackClientError, OSError) as exc:  # URLError, timeouts, a refused connection
            raise ChannelError(f"slack: {what} to {where}: cannot reach {self.config.api_url}: "
                               f"{type(exc).__name__}") from None



def _retry_after(headers: Mapping[str, Any]) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            text = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(str(text)))
            except ValueError:
                break
    return 1.0


def _bot_user(payload: Mapping[str, Any]) -> str:
    """The app's bot user id in the workspace the event came from (``authorizations``)."""
    authorizations = payload.get("authorizations")
    for auth in authorizations if isinstance(authorizations, list) else []:
        if isinstance(auth, dict) and auth.get("is_bot") and isinstance(auth.get("user_id"), str):
            return str(auth["user_id"])
    authed = payload.get("authed_users")  # the older field, still sent to some apps
    return str(authed[0]) if isinstance(authed, list) and len(authed) == 1 and isinstance(authed[0], str) else ""


def _plain_text(text: str, bot: str) -> str:
    """What the agent reads: the app's own mention removed, Slack's escapes (&amp; &lt; &gt;) undone."""
    if bot:
        text = re.sub(rf"<@{re.escape(bot)}(?:\|[^>]*)?>", "", text)
    return html.unescape(re.sub(r"[ \t]{2,}", " ", text)).strip()


def _escaped(text: str) -> str:
    """The answer as Slack's text: &, < and > escaped, so an answer cannot carry Slack's control sequences
    (``<!channel>``, ``<!everyone>``, ``<@U...>`` mentions) that a prompt talked the agent into saying."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

