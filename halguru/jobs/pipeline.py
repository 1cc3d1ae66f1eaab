"""The channel pipeline's two ends in the store: an inbound message is queued once (``StoreSink``), and a
job's side effects happen once across its retries (``send_once``)."""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from halguru.channels.base import Inbound, InboundSink, SendOnce
from halguru.channels.replies import REPLY_ATTEMPTS, channel_owner, queue_key
from halguru.errors import HalguruError
from halguru.store.base import Store
from halguru.store.records import ChannelMessageRecord

REPLY = "reply"
"""The job kind that answers a channel message: run the agent in the thread's conversation, send the answer."""

# Delivery reports may arrive out of order (Twilio's 'sent' after 'delivered'): a status never goes back.
_STATUS_RANK = {"received": 0, "accepted": 1, "queued": 1, "sending": 2, "sent": 3, "delivered": 4,
                "undelivered": 4, "failed": 4, "read": 5}


MAX_KEY_CHARS = 200
"""The longest provider id or thread kept as it is in the store's keys (longer ones: see ``store_key``)."""


def store_key(value: str) -> str:
    """``value`` (a message id, a thread) as a key the store can index: itself when short, else its start and a
    digest of the whole, the same for the same value. An email's sender writes its Message-ID and References at
    any length, and PostgreSQL refuses an index entry over ~2,700 bytes: such a mail failed at every try and the
    inbox behind it was never answered."""
    if len(value) <= MAX_KEY_CHARS:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{value[:MAX_KEY_CHARS // 2]}...sha256:{digest}"


def inbound_id(agent: str, message_id: str) -> str:
    """An inbound message's key in the store (its job's idempotency key, its channel message's id): per agent,
    as one message can reach two agents (an email to help@ with sales@ in Cc) and each answers it."""
    return f"{agent}:{message_id}"


class StoreSink(InboundSink):
    """Channels hand what arrives here: stored and queued once per provider message id and agent."""

    def __init__(self, store: Store, on_enqueue: Callable[[], None] | None = None, max_chars: int | None = None):
        self.store = store
        self.on_enqueue = on_enqueue or (lambda: None)  # wakes an in-process worker
        self.max_chars = max_chars  # serve's max_input_chars: a longer message is cut (a provider cannot be told 413)
        self.bound: tuple[str, str] | None = None  # (channel, agent): see ``for_channel``

    def for_channel(self, channel: str, agent: str) -> StoreSink:
        """This sink, for the channel registered as ``channel`` of ``agent`` (its webhook, its source): a message
        it hands over for another channel or agent is refused, as it would be queued for a reply no worker runs
        (a plugin's ``Inbound(agent=...)`` naming the wrong agent)."""
        sink = copy.copy(self)
        sink.bound = (channel, agent)
        return sink

    def _check(self, message: Inbound) -> None:
        if self.bound is not None and (message.channel, message.agent) != self.bound:
            channel, agent = self.bound
            raise HalguruError(f"the channel {channel!r} of agent {agent} handed over a message for channel "
                               f"{message.channel!r} of agent {message.agent!r}: an Inbound's channel and agent "
                               "are the channel's own (its registered name, the agent it was made for)")

    def accept(self, message: Inbound) -> bool:
        self._check(message)
        # as email does: the API refuses a blank message, and an empty SMS ran the agent on nothing
        text = message.text if message.text.strip() else "(empty message)"
        if self.max_chars is not None and len(text) > self.max_chars:
            text = (f"{text[:self.max_chars]}\n[the message was cut here: it has {max(len(text), message.length)} "
                    f"characters and this server reads at most {self.max_chars}]")
        # the keys the store indexes; the reply itself goes by ``reply``, which keeps the ids as they came
        message_id, thread = store_key(message.message_id), store_key(message.thread)
        payload = {"channel": message.channel, "message_id": message_id, "sender": message.sender,
                   "thread": thread, "text": text, "reply": dict(message.reply), "title": message.title,
                   **({"ours": message.ours} if message.ours else {}),
                   **({"answer": message.answer} if message.answer else {})}
        job, created = self.store.enqueue_job(
            REPLY, message.agent, payload, queue_key=queue_key(message.channel, message.agent, thread),
            idempotency_key=f"{message.channel}:{inbound_id(message.agent, message_id)}",
            owner=channel_owner(message.channel), max_attempts=REPLY_ATTEMPTS)
        if created:
            now = time.time()
            self.store.record_channel_message(ChannelMessageRecord(
                id=inbound_id(message.agent, message_id), channel=message.channel, agent=message.agent,
                conversation_id=None, direction="in", address=message.correspondent or message.sender,
                body=text, status="received", job_id=job["id"], created=now, updated=now))
            self.on_enqueue()
        return created

    def answered(self, channel: str, agent: str, correspondent: str, since: float, text: str | None = None) -> int:
        return self.store.count_channel_answers(channel, agent, correspondent, since, text)

    def opted_out(self, channel: str, agent: str, ours: str, sender: str) -> str | None:
        return opted_out(self.store, channel, agent, ours, sender)

    def set_opted_out(self, channel: str, agent: str, ours: str, sender: str, reason: str | None) -> bool:
        return self.store.set_opt_out(channel, agent, store_key(ours), store_key(sender), reason)

    def seen(self, channel: str, agent: str, message_id: str) -> bool:
        return self.store.get_channel_message(channel, inbound_id(agent, store_key(message_id))) is not None

    def reply_of(self, channel: str, agent: str, sent_id: str) -> Mapping[str, Any] | None:
        sent = self.store.get_channel_message(channel, store_key(sent_id))
        if sent is None or sent["direction"] != "out" or sent["agent"] != agent or not sent["job_id"]:
            return None
        job = self.store.get_job(sent["job_id"])
        reply = job["payload"].get("reply") if job is not None else None
        return reply if isinstance(reply, Mapping) else None

    def ignore(self, message: Inbound, status: str) -> bool:
        self._check(message)
        conversation = self.store.thread_conversation(
            message.channel, message.agent, store_key(message.thread),
            title=message.title or f"{message.channel}: {message.sender}", owner=channel_owner(message.channel))
        now = time.time()
        return self.store.record_channel_message(ChannelMessageRecord(
            id=inbound_id(message.agent, store_key(message.message_id)), channel=message.channel, agent=message.agent,
            conversation_id=conversation, direction="in", address=message.correspondent or message.sender,
            body=message.text, status=status, job_id=None, created=now, updated=now))

    def update_status(self, channel: str, message_id: str, status: str, error: str | None = None) -> bool:
        current = self.store.get_channel_message(channel, message_id)
        if current is None:  # a report can arrive before the worker records what it sent: keep it for then
            now = time.time()
            self.store.record_channel_message(ChannelMessageRecord(
                id=message_id, channel=channel, agent="", conversation_id=None, direction="out", address="",
                body="", status=status, job_id=None, created=now, updated=now, error=error))
            return False
        if _STATUS_RANK.get(status, 3) < _STATUS_RANK.get(current["status"], 0):
            return True  # a late report of an earlier state: known, but it changes nothing
        return self.store.update_channel_message(channel, message_id, status, error=error)


def opted_out(store: Store, channel: str, agent: str, ours: str, sender: str) -> str | None:
    """Why ``sender`` opted out of ``agent``'s messages from ``ours`` on ``channel``, or None."""
    found = store.get_opt_out(channel, agent, store_key(ours), store_key(sender))
    return found["reason"] if found else None


def send_once(store: Store, job_id: str) -> SendOnce:
    """The job's ``SendOnce``: each effect key is performed by one attempt, recorded, and never repeated; and
    none is started once the job was cancelled (outside a run, its worker learns of a cancel only at its next lease
    renewal; a run is stopped at once)."""

    async def once(key: str, send: Callable[[], Awaitable[Any]],
                   find: Callable[[float], Awaitable[Any | None]] | None = None) -> Any:
        import asyncio

        job = await asyncio.to_thread(store.get_job, job_id)
        if job is None or job["status"] != "running":  # the worker then lets go, as when its renewal fails
            raise asyncio.CancelledError(f"job {job_id} is {job['status'] if job else 'gone'}")
        earlier = await asyncio.to_thread(store.begin_effect, job_id, key)
        if earlier is not None and earlier["state"] == "done":
            return {} if earlier["value"] is None else earlier["value"]
        if earlier is not None and find is not None:  # an attempt started it and died: did it get through?
            found = await find(earlier["started"])
            if found is not None:
                await asyncio.to_thread(store.finish_effect, job_id, key, found)
                return found
        value = await send()
        await asyncio.to_thread(store.finish_effect, job_id, key, value)
        return value

    return once
