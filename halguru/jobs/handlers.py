"""What each kind of job does: ``run`` (an agent turn: scheduled, or queued through the API) and ``reply``
(answer a channel message: run the agent in the thread's conversation, send the answer on the channel).

Every side effect goes through ``send_once``: the agent's turn (``run``) and each outbound part. A retried job
finds the turn its dead attempt completed (a stored ``ok`` run of this job: runs record the job that started
them) rather than answering twice, and never sends a part that was sent.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from halguru.agents.events import Error
from halguru.agents.loader import Agent
from halguru.channels.base import Channel, ChannelError, Outbound, SendOnce
from halguru.errors import ConversationBusy
from halguru.jobs.pipeline import REPLY, inbound_id, opted_out, send_once, store_key
from halguru.jobs.retention import RETENTION, retention_job
from halguru.jobs.takeover import HUMAN_REPLY, hold
from halguru.store.base import Store
from halguru.store.records import ChannelMessageRecord, JobRecord

log = logging.getLogger("halguru.worker")

RUN = "run"


def run_queue_key(conversation_id: str | None) -> str | None:
    """The queue key of a ``run`` job that continues a conversation: its jobs run one at a time, in order (two
    turns side by side would interleave their messages). A job that starts a conversation needs none."""
    return f"conversation:{conversation_id}" if conversation_id else None


class JobError(Exception):
    """A job failed; ``permanent`` ones are not retried (a missing agent or channel: retrying cannot help);
    ``outage`` ones (its model could not be reached or refused) wait longer between retries, as a reply its
    channel could not deliver."""

    def __init__(self, message: str, *, permanent: bool = False, outage: bool = False):
        super().__init__(message)
        self.permanent = permanent
        self.outage = outage


class OptedOut(JobError):
    """The recipient opted out (``reason``: what said so): nothing is sent to them, at no retry."""

    def __init__(self, reason: str, message: str):
        super().__init__(message, permanent=True)
        self.reason = reason


class JobPostponed(Exception):
    """The job cannot run yet through no fault of its own (its conversation is answering another message, or
    waits for an approval): queued again ``delay`` seconds later, the attempt not counted."""

    def __init__(self, message: str, delay: float):
        super().__init__(message)
        self.delay = delay


Admit = Callable[[Agent], AbstractAsyncContextManager[Any]]


@dataclass
class JobContext:
    """What handlers run with: the store, the agents this worker serves and their channels."""

    store: Store
    agents: Mapping[str, Agent]
    channels: Mapping[str, Mapping[str, Channel]] = field(default_factory=dict)  # agent -> name -> channel
    admit: Admit | None = None  # serve mode: a place in the model's fair queue
    # serve mode: (agent, folder) -> a published version's folder on this disk, unpacked from the store if missing
    # (a cut run's retry on a replica that never served that version)
    unpack: Callable[[str, str], None] | None = None
    # serve's max_conversation_chars (0: none): a channel thread's full conversation gives way to a new one, a run
    # job in a full conversation is dead (``conversation_full``)
    max_conversation_chars: int = 0

    def agent(self, name: str) -> Agent:
        agent = self.agents.get(name)
        if agent is None:
            raise JobError(f"no agent {name!r} is served by this worker", permanent=True)
        return agent


Handler = Callable[[JobContext, JobRecord], Coroutine[Any, Any, dict[str, Any]]]


async def _turn(ctx: JobContext, job: JobRecord, text: str, conversation: str) -> dict[str, Any]:
    """Run the agent once (through the queue in serve mode) and return how it ended; a failed run raises, so
    its effect stays unfinished and a retry runs it again."""
    from halguru.agents.runtime import NoConversation, collect_result, run
    from halguru.orchestration.durable import VersionDeleted, resume_events

    agent = ctx.agent(job["agent"])
    cut = await _cut_run(ctx.store, job)
    if cut is not None and ctx.unpack is not None:  # its version's folder, from the store if this disk lacks it
        checkpoint = await asyncio.to_thread(ctx.store.get_checkpoint, cut)
        if checkpoint is not None and checkpoint["agent_path"]:
            await asyncio.to_thread(ctx.unpack, job["agent"], checkpoint["agent_path"])
    async with ctx.admit(agent) if ctx.admit else nullcontext():
        try:
            if cut is not None:  # an earlier attempt's team or workflow run: on from its checkpoint, not afresh
                # (its continuation carries the cut run's job on: the store's ``start_run``)
                result = await collect_result(resume_events(cut, store=ctx.store, metadata={"job_id": job["id"]},
                                                            channel_answer=False))  # the job sends it
            else:
                result = await collect_result(run(agent, text, conversation, store=ctx.store, owner=job["owner"],
                                                  metadata={"job_id": job["id"]}, job_id=job["id"]))
        except VersionDeleted as exc:  # the cut run's version: a run afresh would redo the steps it finished
            raise JobError(str(exc), permanent=True) from None
        except NoConversation:  # deleted since the job was queued: no retry brings it back
            raise JobError(f"conversation {conversation} was deleted; the job has nothing to answer in",
                           permanent=True) from None
        except ConversationBusy as exc:  # answering (a dead process's run: until its lease ends), or waiting
            raise JobPostponed(str(exc), exc.retry_after) from None  # for an approval
    if result.status not in ("ok", "paused"):
        fatal = {e.kind for e in result.events if isinstance(e, Error) and e.fatal}
        # an input too long for the model is as long at every retry; a model server down (restarting: a minute or
        # two) made each job dead within 36 s at the run backoff: its retries wait as an outage's
        raise JobError(f"the run {result.run_id} ended {result.status}: {result.error or 'no answer'}",
                       permanent="context" in fatal, outage="model" in fatal)
    return {"run_id": result.run_id, "status": result.status, "output": result.output}


async def _cut_run(store: Store, job: JobRecord) -> str | None:
    """The checkpointed run (a team's, a workflow's) an earlier attempt of this job started and a stop, a crash,
    a failure or a cancel cut (not resumed yet): its retry resumes it, so the steps and tool calls it finished (a
    payment, a mail sent) are not made again. None when there is none. Found by the job id the run records, never
    by its text: a user's same message in the conversation, cut as well, is not this job's to resume. Postponed
    while a run of the job is still held (a killed worker's, until its lease passes)."""
    from halguru.orchestration.durable import RESUMABLE

    runs = await asyncio.to_thread(store.list_runs, 10, job_id=job["id"])
    held = [r for r in runs if r["status"] == "running" and r["lease_expires"]]
    if held:  # a dead attempt's run until its lease passes: it may lapse before this attempt starts its own, and
        # a run afresh would repeat what that one did; wait until it reads cut, then resume it
        wait = max(r["lease_expires"] or 0.0 for r in held) - time.time()
        raise JobPostponed(f"the run {held[0]['id']} of an earlier attempt is still held", max(wait, 0.1))
    return next((r["id"] for r in runs if r["status"] in RESUMABLE and r["kind"] and not r["resumed_by"]), None)


def _find_turn(store: Store, job: JobRecord) -> Callable[[float], Awaitable[dict[str, Any] | None]]:
    """Did a dead attempt finish the turn? This job's newest run that ended ok or paused (a continuation of its
    run counts: it carries the job on), not a run that merely has the same input."""

    async def find(_started: float) -> dict[str, Any] | None:
        runs = await asyncio.to_thread(store.list_runs, 10, job_id=job["id"])
        return next(({"run_id": r["id"], "status": r["status"], "output": r["output"]} for r in runs
                     if r["status"] in ("ok", "paused")), None)

    return find


async def run_job(ctx: JobContext, job: JobRecord) -> dict[str, Any]:
    """An agent turn on ``payload.input``, in ``payload.conversation_id`` or a new conversation."""
    payload = job["payload"]
    text = str(payload.get("input") or "")
    if not text:
        raise JobError("the job has no input", permanent=True)
    conversation = str(payload.get("conversation_id") or await asyncio.to_thread(_new_conversation, ctx.store, job))
    once = send_once(ctx.store, job["id"])
    if payload.get("conversation_id") and (held := await _overfull(ctx, conversation, text)) is not None:
        raise JobError(f"conversation {conversation} holds {held} characters and a conversation keeps at most "
                       f"{ctx.max_conversation_chars} (HALGURU_SERVE_MAX_CONVERSATION_CHARS): conversation_full; "
                       "queue the job without conversation_id to start a new one", permanent=True)
    if payload.get("conversation_id") and await _held(ctx, job, once, conversation, text):
        return {"status": "taken_over", "conversation_id": conversation}
    turn = await once("run", lambda: _turn(ctx, job, text, conversation), _find_turn(ctx.store, job))
    return {**turn, "conversation_id": conversation}


def _new_conversation(store: Store, job: JobRecord) -> str:
    """One conversation per job, made once: a retry finds the one its first attempt made."""
    title = str(job["payload"].get("title") or job["payload"].get("input", ""))[:80]
    return store.thread_conversation("job", job["agent"], job["id"], title=title, owner=job["owner"])


async def reply_job(ctx: JobContext, job: JobRecord) -> dict[str, Any]:
    """Answer a channel message in its thread's conversation and send the answer back on the channel."""
    p = job["payload"]
    channel = ctx.channels.get(job["agent"], {}).get(p["channel"])
    if channel is None:
        raise JobError(f"agent {job['agent']} has no {p['channel']} channel here", permanent=True)
    conversation = await _thread_conversation(ctx, job)
    await asyncio.to_thread(ctx.store.update_channel_message, p["channel"], inbound_id(job["agent"], p["message_id"]),
                            conversation_id=conversation)
    try:
        return {**await _answer(ctx, job, channel, conversation), "conversation_id": conversation}
    except OptedOut as exc:  # before the agent ran (STOP came after the question), or after (STOP while it ran,
        # or Twilio's 21610): recorded as unanswered, not a dead job for the operator to look into
        await asyncio.to_thread(ctx.store.update_channel_message, p["channel"],
                                inbound_id(job["agent"], p["message_id"]), f"ignored: opted out ({exc.reason})",
                                error="")  # not an earlier try's failure to send: this is why
        return {"status": "opted_out", "conversation_id": conversation, "sent": []}


async def _thread_conversation(ctx: JobContext, job: JobRecord) -> str:
    """The thread's conversation, or a new one for the thread when this message would take it past
    ``max_conversation_chars`` and no operator holds it. A texter cannot start a new conversation as an API caller
    told 409 ``conversation_full`` does, so the channel starts one for them (the agent no longer sees what was said
    before); the full one stays, under the channel, in the console."""
    p = job["payload"]

    def find() -> str:
        return ctx.store.thread_conversation(p["channel"], job["agent"], p["thread"],
                                             title=p.get("title") or f"{p['channel']}: {p['sender']}",
                                             owner=job["owner"])

    conversation = await asyncio.to_thread(find)
    if await _overfull(ctx, conversation, str(p.get("text") or ""), held_by_operator=False) is None:
        return conversation
    await asyncio.to_thread(ctx.store.retire_thread, p["channel"], job["agent"], p["thread"], conversation)
    return await asyncio.to_thread(find)


async def _overfull(ctx: JobContext, conversation: str, text: str, *, held_by_operator: bool = True) -> int | None:
    """How many characters the conversation holds when ``text`` would take it past ``max_conversation_chars``
    (None: room, or no cap; ``held_by_operator=False``: None too while an operator holds it)."""
    limit = ctx.max_conversation_chars
    if not limit:
        return None

    def held() -> int | None:
        row = ctx.store.get_conversation(conversation)
        if row is None or (not held_by_operator and row.get("taken_over_by")):
            return None
        chars = ctx.store.conversation_chars(conversation)
        return chars if chars + len(text) > limit else None

    return await asyncio.to_thread(held)


async def _answer(ctx: JobContext, job: JobRecord, channel: Channel, conversation: str) -> dict[str, Any]:
    """The agent's turn on the job's message (or its fixed answer) and its sending; raises ``OptedOut``."""
    p = job["payload"]
    once = send_once(ctx.store, job["id"])
    opted = await asyncio.to_thread(_opted_out, ctx.store, job)
    if opted:  # since it was queued: Twilio would refuse the answer, so the agent is not run
        raise OptedOut(opted, f"{p['sender']} opted out ({opted})")
    if p.get("answer"):  # a fixed answer (HELP's help_text): no run
        return {"status": "ok", "sent": await _send(ctx, job, channel, once, conversation, p["answer"])}
    if await _held(ctx, job, once, conversation, p["text"]):  # an operator answers it: the reply waits for them
        return {"status": "taken_over", "sent": []}
    turn = await once("run", lambda: _turn(ctx, job, p["text"], conversation), _find_turn(ctx.store, job))
    if turn["status"] != "ok" or not turn["output"].strip():
        return {**turn, "sent": []}  # paused for approval: nothing to say yet
    return {**turn, "sent": await _send(ctx, job, channel, once, conversation, turn["output"])}


async def _held(ctx: JobContext, job: JobRecord, once: SendOnce, conversation: str, text: str) -> bool:
    """Is an operator holding the conversation? Then the message is stored (once) and the agent not run. A
    first attempt in a conversation nobody holds costs one read; a retry asks what the first one did."""
    row = await asyncio.to_thread(ctx.store.get_conversation, conversation)
    if job["attempts"] <= 1 and not (row and row.get("taken_over_by")):
        return False

    async def store() -> dict[str, Any]:
        return {"held": await asyncio.to_thread(hold, ctx.store, conversation, text)}

    return bool((await once("hold", store)).get("held"))


async def _send(ctx: JobContext, job: JobRecord, channel: Channel, once: SendOnce, conversation: str,
                text: str) -> list[str | None]:
    """``text`` out on the job's channel (each part once), recorded as sent channel messages; their ids."""
    p = job["payload"]
    outbound = Outbound(channel=p["channel"], agent=job["agent"], conversation_id=conversation, job_id=job["id"],
                        text=text, reply=p.get("reply") or {})
    opted = await asyncio.to_thread(_opted_out, ctx.store, job)
    if opted:  # an operator's answer, an approved call's, the agent's after a STOP: the provider would refuse it
        raise OptedOut(opted, f"{p['sender']} opted out ({opted}) of messages from {p.get('ours')}; they opt back "
                              "in by sending START")
    try:
        sent = await channel.send(outbound, once)
    except ChannelError as exc:
        if not (exc.opted_out and p.get("ours")):
            await asyncio.to_thread(_unsent, ctx.store, job, exc)
            raise
        # a STOP that never reached us (sent before this number was ours): remembered, nothing more is sent
        await asyncio.to_thread(ctx.store.set_opt_out, p["channel"], job["agent"], store_key(p["ours"]),
                                store_key(p["sender"]), exc.opted_out)
        raise OptedOut(exc.opted_out, str(exc)) from None
    if job["attempts"] > 1:  # an earlier try's failure said on the message being answered: it went out now
        await asyncio.to_thread(_unsent, ctx.store, job, None)
    ids = _sent_ids(p["channel"], job["agent"], sent)
    now = time.time()
    for part, message_id in enumerate(ids):
        await asyncio.to_thread(ctx.store.record_channel_message, ChannelMessageRecord(
            id=message_id or f"{job['id']}.{part}-{secrets.token_hex(3)}", channel=p["channel"], agent=job["agent"],
            conversation_id=conversation, direction="out", address=p["sender"],
            body=text if part == 0 else "", status="sent", job_id=job["id"], created=now, updated=now))
    return ids


def _sent_ids(channel: str, agent: str, sent: object) -> list[str | None]:
    """What a channel's ``send`` gave, as the parts' ids: a list of strings (None for a part without).
    Anything else is a plugin's bug, said in the log naming it; the message went out, so it is recorded all the
    same, as one part (a str: that part's id, where its letters were read as the ids of as many parts)."""
    if isinstance(sent, list | tuple) and all(isinstance(i, str) or i is None for i in sent):
        return list(sent)
    from halguru.errors import a_kind
    from halguru.plugins.manager import owners

    log.warning("channel %r (plugin %r) of agent %s: its send gave %s, not the list of the parts' ids; recorded as "
                "one part", channel, owners("register_channels").get(channel, "?"), agent,
                "None" if sent is None else a_kind(sent))
    return [sent] if isinstance(sent, str) else [None]


UNSENT, UNSENT_YET = "answer not sent", "answer not sent yet"


def _unsent(store: Store, job: JobRecord, exc: ChannelError | None) -> None:
    """Say on the conversation that a job's answer did not go out (the provider down, or refusing it), and whether
    it is tried again; or, with no ``exc``, that it went out after all. The answer is in the conversation either
    way: without this, one that never reached the person read as said. A reply job's is said on the message it
    answers; a human_reply's (an operator's answer, an approved run's) is an outgoing message of its own, which
    the parts sent take the place of."""
    p = job["payload"]
    if job["kind"] == REPLY and p.get("message_id"):
        message_id = inbound_id(job["agent"], p["message_id"])
    elif job["kind"] == HUMAN_REPLY and p.get("conversation_id"):
        message_id = f"{job['id']}.unsent"
    else:
        return
    if exc is None:
        current = store.get_channel_message(p["channel"], message_id)
        if current is None or current["status"] not in (UNSENT, UNSENT_YET):
            return
        if job["kind"] == REPLY:
            store.update_channel_message(p["channel"], message_id, "received", error="")
        else:
            store.forget_channel_message(p["channel"], message_id)
        return
    final = exc.permanent or job["attempts"] >= job["max_attempts"]
    how = ("not retried: the provider refused it" if exc.permanent else
           f"gave up after {job['attempts']} tries" if final else
           f"try {job['attempts']} of {job['max_attempts']}; retrying")
    if job["kind"] == HUMAN_REPLY:
        now = time.time()
        store.record_channel_message(ChannelMessageRecord(
            id=message_id, channel=p["channel"], agent=job["agent"], conversation_id=p["conversation_id"],
            direction="out", address=p["sender"], body=p["text"], status=UNSENT_YET, job_id=job["id"], created=now,
            updated=now))
    store.update_channel_message(p["channel"], message_id, UNSENT if final else UNSENT_YET, error=f"{exc} ({how})")


def _opted_out(store: Store, job: JobRecord) -> str | None:
    """Why the job's recipient opted out of the number it wrote to, or None (a channel without opt-outs)."""
    p = job["payload"]
    return opted_out(store, p["channel"], job["agent"], p["ours"], p["sender"]) if p.get("ours") else None


async def human_reply_job(ctx: JobContext, job: JobRecord) -> dict[str, Any]:
    """Send an operator's message (a taken-over conversation) on the channel its conversation came from."""
    p = job["payload"]
    channel = ctx.channels.get(job["agent"], {}).get(p["channel"])
    if channel is None:
        raise JobError(f"agent {job['agent']} has no {p['channel']} channel here", permanent=True)
    sent = await _send(ctx, job, channel, send_once(ctx.store, job["id"]), p["conversation_id"], p["text"])
    return {"conversation_id": p["conversation_id"], "sent": sent}


HANDLERS: dict[str, Handler] = {RUN: run_job, REPLY: reply_job, HUMAN_REPLY: human_reply_job,
                                RETENTION: retention_job}
