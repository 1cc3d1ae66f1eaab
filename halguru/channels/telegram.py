"""The Telegram channel: a bot's webhook in (``setWebhook`` with a ``secret_token``), ``sendMessage`` out, over httpx.

Invariant: nothing reaches the sink unless the request carries ``X-Telegram-Bot-Api-Secret-Token`` equal to the
configured secret (compared in constant time): Telegram sends it on every webhook call once ``setWebhook`` was
given it, and nobody else knows it.

A private chat is one conversation; a group is one per chat, and a forum's topic one per topic. In groups the bot
answers only messages addressed to it (an @mention of it, a command, a reply to one of its messages) unless
``answer: all``; private chats are always answered. A message is stored and queued once per bot, chat and
``message_id`` (Telegram's retries of an update carry the same message, so they never start a second run; the
``update_id`` itself restarts at random after a week without updates, so it is not the key). Never answered, so
bots never talk to each other and nothing is answered twice: bots' messages, edits (recorded on the console,
unanswered), channel posts and service messages (joins, pins). A message without text (a sticker, a photo without
a caption) is answered with a short note saying the bot reads text only, without running the agent.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
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
from halguru.errors import AgentSpecError, HalguruError

if TYPE_CHECKING:
    import httpx

DEFAULT_API_URL = "https://api.telegram.org"
REQUEST_TIMEOUT = 30.0  # seconds per Bot API call
TEXT_LIMIT = 4096  # sendMessage's text, counted in UTF-16 code units as Telegram counts them (an emoji is two)
TEXT_ONLY = "I can only read text messages: please write your question."
"""The answer to a message without text (a sticker, a voice note, a photo without a caption): the agent reads text."""
# What a message without text carries, as the agent is told of it ([a photo]); anything else without text (a member
# joining, a pinned message, a forum topic made) is a service message, never answered.
MEDIA = {"photo": "a photo", "sticker": "a sticker", "voice": "a voice message", "video": "a video",
         "video_note": "a video message", "audio": "an audio file", "document": "a file", "animation": "a GIF",
         "location": "a location", "venue": "a place", "contact": "a contact", "poll": "a poll", "dice": "a dice",
         "story": "a story", "paid_media": "paid media"}
# Telegram's refusals another try cannot mend, by what its description says: shown with the job's error.
HINTS = {
    "bot was blocked by the user": "the user blocked the bot",
    "bot was kicked": "the bot was removed from the group",
    "bot is not a member": "the bot is not a member of the chat",
    "user is deactivated": "the user deleted their account",
    "chat not found": "the chat does not exist or the bot cannot see it",
    "not enough rights": "the bot may not write in this chat",
    "message thread not found": "the forum topic was deleted",
    "topic_closed": "the forum topic is closed",
    "message is too long": "the message is too long",
    "unauthorized": "the bot token is not valid (channels.telegram.bot_token)",
}
log = logging.getLogger("halguru.channels.telegram")

_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_TOKEN = re.compile(r"([0-9]{1,20}):[A-Za-z0-9_-]{20,}")  # the bot's id, a colon, its key
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what setWebhook's secret_token may be
_USERNAME = re.compile(r"@[A-Za-z0-9_]{3,32}")
_IN_URL = re.compile(r"/bot[0-9]+:[A-Za-z0-9_-]+")


class TelegramConfig(BaseModel):
    """``channels: {telegram: {...}}`` in agent.yaml."""

    model_config = ConfigDict(extra="forbid")

    bot_token: str = Field(description="the NAME of the secret holding the bot's token from @BotFather")
    secret_token: str = Field(description="the NAME of the secret holding the webhook's secret_token "
                                          "(1-256 of A-Z a-z 0-9 _ -), given to setWebhook")
    allow_from: list[str] | None = Field(default=None, description="only these user ids, @usernames or (negative) "
                                                                   "group chat ids get an answer")
    answer: Literal["mentions", "all"] = Field(default="mentions", description="in groups, answer only messages "
                                               "addressed to the bot, or every message (private chats always)")
    api_url: str = Field(default=DEFAULT_API_URL, description="the Bot API server (a self-hosted one, a test server)")
    max_answers_per_hour: int = Field(default=60, ge=0, description="per user, counted in the store; 0: no limit")

    @field_validator("bot_token", "secret_token")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if _TOKEN.fullmatch(value):
            raise ValueError("names the secret that holds it (e.g. TELEGRAM_BOT_TOKEN), not the secret itself: "
                             "never put a token in agent.yaml")
        if not _SECRET_NAME.fullmatch(value):
            raise ValueError("must name a secret: an environment variable or keyring entry like TELEGRAM_BOT_TOKEN")
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("allow_from", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        entries = []
        for entry in value:
            text = str(entry) if isinstance(entry, int) and not isinstance(entry, bool) else entry
            if not isinstance(text, str) or not (re.fullmatch(r"-?[0-9]{1,20}", text) or _USERNAME.fullmatch(text)):
                raise ValueError(f"{entry!r} is not a Telegram user id (123456789), @username or group chat id "
                                 "(-100...)")
            entries.append(text.lower())
        return entries


def parse_config(agent: str, config: Mapping[str, Any]) -> TelegramConfig:
    """The validated config; a problem is one line naming the agent and the field."""
    return parse_settings(TelegramConfig, agent, "telegram", config)



class _Redact(logging.Filter):
    """httpx logs each request's URL at INFO, and a Bot API URL holds the token (``/bot123:ABC.../``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _IN_URL.search(str(record.msg)) or any(_IN_URL.search(str(a)) for a in record.args or ()):
            record.msg = _IN_URL.sub("/bot<token>", record.getMessage())
            record.args = ()
        return True


if not any(isinstance(f, _Redact) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_Redact())


class TelegramChannel:
    """One agent's Telegram bot: the webhook Telegram calls, and replies through ``sendMessage``."""

    name: ClassVar[str] = "telegram"

    def __init__(self, agent: str, config: Mapping[str, Any], folder: Path) -> None:
        self.agent = agent
        self.config = parse_config(agent, config)
        self._token = channel_secret(agent, "telegram", "bot_token", self.config.bot_token,
                                     "the bot token from @BotFather")
        token = _TOKEN.fullmatch(self._token)
        if token is None:
            raise AgentSpecError(f"agent {agent}: channels.telegram.bot_token: the secret {self.config.bot_token} "
                                 "is not a bot token (123456789:AA..., as @BotFather gives it)")
        self.bot_id = token.group(1)  # the bot's user id: replies to its messages are addressed to it
        self._secret_token = channel_secret(agent, "telegram", "secret_token", self.config.secret_token,
                                            "a random webhook secret")
        if not _WEBHOOK_SECRET.fullmatch(self._secret_token):
            raise AgentSpecError(f"agent {agent}: channels.telegram.secret_token: the secret "
                                 f"{self.config.secret_token} must be 1-256 of A-Z a-z 0-9 _ - (Telegram's rule for "
                                 "a webhook's secret_token)")
        self._username: str | None = None  # the bot's @username, asked of getMe once it is needed

    # -- inbound -------------------------------------------------------------------------------------------
    async def webhook(self, request: WebhookRequest, sink: InboundSink) -> WebhookResponse:
        """Telegram's updates, each checked before anything is read."""
        if not self.genuine(request):  # first: to an outsider, this webhook answers as one that is not there
            why = ("without X-Telegram-Bot-Api-Secret-Token (setWebhook was not given secret_token, or not from "
                   "Telegram)" if "x-telegram-bot-api-secret-token" not in request.headers else
                   "whose X-Telegram-Bot-Api-Secret-Token is not channels.telegram.secret_token's secret")
            log.warning("telegram webhook of %s: refused a request %s", self.agent, why)
            return WebhookResponse(403, NOT_SIGNED)
        if request.method.upper() != "POST" or request.path:
            return WebhookResponse(404, "Telegram posts updates to the webhook itself")
        try:
            update = json.loads(request.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return WebhookResponse(400, "not a Telegram update: the body is not JSON")
        if not isinstance(update, dict):
            return WebhookResponse(400, "not a Telegram update: the body is not a JSON object")
        edited = isinstance(update.get("edited_message"), dict)
        message = update.get("edited_message") if edited else update.get("message")
        if not isinstance(message, dict):  # channel posts, callback queries, member updates: nothing to answer
            kind = next((k for k in update if k != "update_id"), "empty")
            log.info("telegram channel of %s: not answering a %s update", self.agent, kind)
            return WebhookResponse(200, "")
        try:
            inbound = await self.inbound(message)
        except ChannelError as exc:  # getMe failed: Telegram sends the update again later
            log.warning("telegram channel of %s: %s", self.agent, exc)
            return WebhookResponse(503, "cannot tell whether the message is addressed to the bot yet")
        if inbound is not None and edited:  # each edit is one record: the original's id and when it was edited
            edit = replace(inbound, message_id=f"{inbound.message_id}:edited:{message.get('edit_date')}", answer="")
            await asyncio.to_thread(self._edited, edit, inbound.message_id, sink)
        elif inbound is not None:
            await asyncio.to_thread(self._take, inbound, sink)
        return WebhookResponse(200, "")

    def genuine(self, request: WebhookRequest) -> bool:
        """Whether the request carries the webhook's secret token (constant time: no guessing it byte by byte)."""
        given = request.headers.get("x-telegram-bot-api-secret-token", "")
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._secret_token.encode())

    async def inbound(self, message: Mapping[str, Any]) -> Inbound | None:
        """What a message is to the agent, when it is one to answer (else None, logged)."""
        chat, sender = message.get("chat"), message.get("from")
        why = None
        if not (isinstance(chat, dict) and isinstance(chat.get("id"), int) and isinstance(message.get("message_id"),
                                                                                         int)):
            why = "a message without chat and message_id"
        elif not isinstance(sender, dict) or not isinstance(sender.get("id"), int):
            why = "a message without a sender (sent on behalf of a channel or an anonymous admin)"
        elif sender.get("is_bot"):
            why = "a bot's message"
        elif not self.allowed(sender, chat):  # quietly: nothing is stored for a sender this agent does not serve
            handle = f" (@{sender['username']})" if sender.get("username") else ""
            why = f"a message from user {sender['id']}{handle} in chat {chat['id']}: outside allow_from"
        elif not (isinstance(message.get("text"), str) or isinstance(message.get("caption"), str)
                  or any(k in message for k in MEDIA)):
            why = "a service message (a member joining, a pin, ...)"
        elif chat.get("type") != "private" and self.config.answer != "all" and not await self.addressed(message):
            why = "a group message not addressed to the bot (answer: mentions)"
        if why:
            log.info("telegram channel of %s: not answering %s", self.agent, why)
            return None
        assert isinstance(chat, dict) and isinstance(sender, dict)
        text = str(message.get("text") or message.get("caption") or "")
        entities = message.get("entities") or message.get("caption_entities")
        mentions = isinstance(entities, list) and any(isinstance(e, dict) and e.get("type") == "mention"
                                                      for e in entities)
        if self._username is None and mentions:  # a private chat's "@Bot hi": its name, when getMe answers
            try:
                await self.username()
            except ChannelError as exc:
                log.info("telegram channel of %s: the bot's name is not known yet: %s", self.agent, exc)
        if self._username:
            text = re.sub(rf"@{re.escape(self._username)}\b", "", text, flags=re.I)
        text = re.sub(r"[ \t]{2,}", " ", text).strip()
        media = next((MEDIA[k] for k in MEDIA if k in message), None)
        if media:
            name = (message.get("document") or {}).get("file_name") if isinstance(message.get("document"), dict) else ""
            text = f"{text}\n[{media}{': ' + str(name) if name else ''}]".strip()
        chat_id, private = chat["id"], chat.get("type") == "private"
        topic = message.get("message_thread_id") if message.get("is_topic_message") else None
        thread = f"{self.bot_id}:{chat_id}" + (f":{topic}" if isinstance(topic, int) else "")
        user = str(sender["id"])
        who = f"@{sender['username']}" if sender.get("username") else str(sender.get("first_name") or user)
        where = who if private else str(chat.get("title") or chat_id)
        reply: dict[str, Any] = {"chat_id": chat_id}
        if not private:  # in a group, the answer quotes what it answers
            reply["reply_to"] = message["message_id"]
        if isinstance(topic, int):
            reply["thread_id"] = topic
        return Inbound(
            channel=self.name, agent=self.agent, message_id=f"{self.bot_id}:{chat_id}:{message['message_id']}",
            sender=user, thread=thread, text=text, reply=reply, title=f"Telegram {where}: {title_line(text)}",
            answer=TEXT_ONLY if media and not message.get("caption") else "")

    def allowed(self, sender: Mapping[str, Any], chat: Mapping[str, Any]) -> bool:
        allow = self.config.allow_from
        if allow is None:
            return True
        username = f"@{sender.get('username')}".lower() if sender.get("username") else None
        return str(sender.get("id")) in allow or username in allow or str(chat.get("id")) in allow

    async def addressed(self, message: Mapping[str, Any]) -> bool:
        """Whether a group message is for the bot: a reply to its message, a command (``/help``, or
        ``/help@thisbot`` where several bots listen), or an @mention of it."""
        replied = message.get("reply_to_message")
        if isinstance(replied, dict) and str((replied.get("from") or {}).get("id")) == self.bot_id:
            return True
        text = str(message.get("text") or message.get("caption") or "")
        entities = message.get("entities") or message.get("caption_entities") or []
        said = [_entity_text(text, e) for e in entities if isinstance(e, dict)
                and e.get("type") in ("mention", "bot_command")]
        if any(s.startswith("/") and "@" not in s for s in said):
            return True
        if not any("@" in s for s in said):
            return False
        username = await self.username()
        return any(s.lower().endswith(f"@{username.lower()}") for s in said)

    async def username(self) -> str:
        """The bot's @username (without the @), asked of getMe once."""
        if self._username is None:
            import httpx

            async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
                result = await self._call(client, "getMe", {}, "getMe")
            self._username = str(result.get("username") or "")
        return self._username

    def _edited(self, edit: Inbound, original: str, sink: InboundSink) -> None:
        """An edit of a message taken is shown on the console, unanswered: answering each edit would answer one
        question twice (or ten times). An edit of one never taken (not addressed, over the limits) is dropped."""
        if sink.seen(self.name, self.agent, original):
            sink.ignore(edit, "edited: not answered")

    def _take(self, message: Inbound, sink: InboundSink) -> None:
        if sink.seen(self.name, self.agent, message.message_id):
            log.info("telegram channel of %s: %s is a retry of a message taken already", self.agent,
                     message.message_id)
            return
        if not too_many(sink, message, self.config.max_answers_per_hour):
            sink.accept(message)

    async def set_webhook(self, base_url: str) -> str:
        """Tell Telegram to post the bot's updates to this agent's webhook under ``base_url`` (where serve is
        reached), with the secret token it must carry; that webhook's URL."""
        import httpx

        url = f"{http_url(base_url)}/channels/telegram/{self.agent}"
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
            await self._call(client, "setWebhook", {"url": url, "secret_token": self._secret_token,
                                                    "allowed_updates": ["message", "edited_message"]}, "setWebhook")
        return url

    # -- outbound ------------------------------------------------------------------------------------------
    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        """The answer as one message per part (split at ``TEXT_LIMIT``), each part sent once, in order; their
        ids (bot:chat:message_id). Plain text, no ``parse_mode``: an answer cannot carry Markdown or HTML a
        prompt talked the agent into. The Bot API cannot read a chat back, so a part whose sending died
        before its answer was recorded is sent again."""
        import httpx

        from halguru.channels.twilio import split_text

        chat_id = message.reply.get("chat_id")
        if not isinstance(chat_id, int | str) or chat_id == "":
            raise HalguruError(f"telegram: job {message.job_id} has no chat to answer in")
        parts = split_text(message.text, TEXT_LIMIT)
        sent = []
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
            for index, part in enumerate(parts):
                fields: dict[str, Any] = {"chat_id": chat_id, "text": part, "link_preview_options": {
                    "is_disabled": True}}
                if message.reply.get("thread_id"):
                    fields["message_thread_id"] = message.reply["thread_id"]
                if index == 0 and message.reply.get("reply_to"):  # the first part quotes the question
                    fields |= {"reply_to_message_id": message.reply["reply_to"], "allow_sending_without_reply": True}
                what = f"part {index + 1}/{len(parts)}"

                async def post(fields: dict[str, Any] = fields, what: str = what) -> dict[str, Any]:
                    return await self._post(client, fields, what)

                result = await once(f"part:{index}", post)
                sent.append(f"{self.bot_id}:{result['chat_id']}:{result['message_id']}")
                chat_id = result["chat_id"]  # a group that became a supergroup: the next parts go there too
        return sent

    async def _post(self, client: httpx.AsyncClient, fields: dict[str, Any], what: str) -> dict[str, Any]:
        async def call(fields: dict[str, Any]) -> dict[str, Any]:
            where = f"{what} to chat {fields['chat_id']}"
            return await waiting_out(lambda: self._call(client, "sendMessage", fields, where), f"telegram: {where}",
                                     "retry_after")

        try:
            result = await call(fields)
        except _Migrated as moved:  # the group became a supergroup: answered at its new id
            log.info("telegram channel of %s: chat %s is now %s", self.agent, fields["chat_id"], moved.chat_id)
            fields = {**fields, "chat_id": moved.chat_id}
            try:
                result = await call(fields)
            except _Migrated:
                raise ChannelError(f"telegram: {what} to chat {fields['chat_id']}: the chat moved again",
                                   permanent=True) from None
        chat: dict[str, Any] = result["chat"] if isinstance(result.get("chat"), dict) else {}
        return {"chat_id": chat.get("id", fields["chat_id"]), "message_id": result.get("message_id")}

    async def _call(self, client: httpx.AsyncClient, method: str, fields: Mapping[str, Any],
                    what: str) -> dict[str, Any]:
        """One Bot API call; its ``result``, or its failure as one line (``RateLimited`` for a 429). The
        token is in the URL: it never appears in what is raised or logged."""
        import httpx

        try:
            response = await client.post(f"{self.config.api_url}/bot{self._token}/{method}", json=dict(fields))
        except httpx.HTTPError as exc:  # refused, timed out, a broken connection
            raise ChannelError(f"telegram: {what}: cannot reach {self.config.api_url}: {type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        if response.status_code == 200 and body.get("ok"):
            result = body.get("result")
            return result if isinstance(result, dict) else {}
        parameters: dict[str, Any] = body["parameters"] if isinstance(body.get("parameters"), dict) else {}
        if response.status_code == 429 or body.get("error_code") == 429:
            wait = parameters.get("retry_after")
            raise RateLimited(float(wait) if isinstance(wait, int | float) and wait >= 0 else 1.0)
        if isinstance(parameters.get("migrate_to_chat_id"), int):
            raise _Migrated(parameters["migrate_to_chat_id"])
        description = str(body.get("description") or "no description given").splitlines()[0][:200]
        hint = next((h for key, h in HINTS.items() if key in description.lower()), None)
        # a 4xx is Telegram refusing this request as it is; a 5xx (or a proxy's page) is tried again by the job
        permanent = 400 <= response.status_code < 500
        raise ChannelError(f"telegram: {what} failed: HTTP {response.status_code}, {description}"
                           + (f" ({hint})" if hint else ""), permanent=permanent)



class _Migrated(Exception):
    def __init__(self, chat_id: int) -> None:
        self.chat_id = chat_id


def _entity_text(text: str, entity: Mapping[str, Any]) -> str:
    """The text an entity covers; its offset and length count UTF-16 code units, as Telegram's do."""
    offset, length = entity.get("offset"), entity.get("length")
    if not isinstance(offset, int) or not isinstance(length, int):
        return ""
    units = text.encode("utf-16-le")
    return units[offset * 2:(offset + length) * 2].decode("utf-16-le", "replace")

