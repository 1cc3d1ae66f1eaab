"""How answers are queued for a channel outside a reply job: an operator's message in a conversation taken over
(``halguru.jobs.takeover``), and the answer of a paused run's continuation once its call is decided
(``halguru.orchestration.approvals``). Both queue a ``human_reply`` job, which the worker sends through the same
once-only path as the agent's replies. Here, below orchestration, so that every way of deciding an approval
sends its answer."""

from __future__ import annotations

from halguru.store.base import Store

REPLY_ATTEMPTS = 8
"""Tries of a job that sends on a channel: a failed run's retries span ~4 minutes, an undelivered reply's ~1 hour
(the worker's ``delivery_backoff``), where the 5 tries of other jobs gave a mail server ~30 s to come back."""
HUMAN_REPLY = "human_reply"
"""The job kind that sends an operator's message (or a decided run's answer) on the conversation's channel."""


def channel_owner(channel: str) -> str:
    """Who owns what a channel creates: no API key's principal (only admins see SMS or email threads)."""
    return f"channel:{channel}"


def queue_key(channel: str, agent: str, thread: str) -> str:
    """Jobs of one thread run one at a time, in order: two messages from one person are answered in order."""
    return f"{channel}:{agent}:{thread}"


def send_on_channel(store: Store, conversation_id: str, text: str, key: str, seq: int | None = None,
                    ordered: bool = True) -> str | None:
    """Queue a ``human_reply`` job sending ``text`` when a channel's message started the conversation, once per
    ``key`` (``ordered``: after the jobs queued in its thread); its id (None: no channel, or no message of it
    whose job still says where to answer)."""
    inbound = [m for m in store.list_channel_messages(conversation_id) if m["direction"] == "in" and m["job_id"]]
    # the newest message whose job kept its payload: a pruned job is a stub without one (its key only)
    jobs = (store.get_job(m["job_id"] or "") for m in reversed(inbound))
    job = next((j for j in jobs if j is not None and "channel" in j["payload"]), None)
    if job is None:
        return None
    p = job["payload"]
    payload = {"channel": p["channel"], "thread": p["thread"], "sender": p["sender"], "reply": p.get("reply") or {},
               "text": text, "conversation_id": conversation_id, "seq": seq,
               **({"ours": p["ours"]} if p.get("ours") else {})}
    queued, _ = store.enqueue_job(HUMAN_REPLY, job["agent"], payload,
                                  queue_key=queue_key(p["channel"], job["agent"], p["thread"]) if ordered else None,
                                  idempotency_key=key, owner=channel_owner(p["channel"]),
                                  max_attempts=REPLY_ATTEMPTS)
    return queued["id"]
