"""Retention: each agent's conversations are deleted once they have been idle ``retention_days`` days.

An agent opts in with ``metadata: {retention_days: N}`` in its agent.yaml (a positive number; absent: kept
for ever), so the rule travels with the agent to every worker that serves it. Every worker's schedule loop
ticks ``Retention``: once an hour per agent (the store's schedule row decides which worker), a ``retention``
job deletes that agent's conversations last active more than N days ago, with their messages, runs, traces,
approvals, checkpoints and channel records (``Store.delete_conversation``), leaving out those an operator has
taken over and those with a run still going.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from halguru.agents import metadata
from halguru.agents.loader import Agent
from halguru.errors import HalguruError
from halguru.store.base import Store

if TYPE_CHECKING:
    from halguru.jobs.handlers import JobContext
    from halguru.store.records import JobRecord

log = logging.getLogger("halguru.worker")

RETENTION = "retention"
"""The job kind that deletes an agent's expired conversations."""
INTERVAL = 3600.0  # seconds between two retention jobs of one agent
BATCH = 200  # conversations one job deletes at most (the next one goes on)


def retention_days(agent: Agent) -> float | None:
    """The agent's ``metadata.retention_days``, or None; a value that is not a positive number is a one-line
    error naming the agent (the check is `halguru validate`'s: halguru.agents.metadata)."""
    try:
        return metadata.retention_days(agent.spec.metadata)
    except HalguruError as exc:
        raise HalguruError(f"agent {agent.spec.name}: {exc}") from None


class Retention:
    """Queues each agent's ``retention`` job once per ``INTERVAL`` (the first at once), across workers."""

    def __init__(self, store: Store, agents: Mapping[str, Agent]):
        self.store = store
        self.agents = agents  # read at each tick: a version published or rolled back meanwhile counts from then
        self._refused: set[tuple[str, object]] = set()  # (agent, bad value) logged: once each, not every tick

    def entries(self) -> list[tuple[str, float]]:
        """(agent, days) of the agents served now that keep conversations a limited time; an agent whose
        ``retention_days`` is not a number of days is logged once and left out (its conversations are kept)."""
        entries = []
        for name, agent in list(self.agents.items()):
            try:
                days = retention_days(agent)
            except HalguruError as exc:
                value = (name, repr(agent.spec.metadata.get("retention_days")))
                if value not in self._refused:
                    self._refused.add(value)
                    log.error("%s; its conversations are kept", exc)
                continue
            if days is not None:
                entries.append((name, days))
        return entries

    def tick(self, now: float) -> int:
        """Queue the retention jobs that are due; how many."""
        queued = 0
        for agent, days in self.entries():
            sid = f"{agent}:{RETENTION}"
            due = self.store.schedule_next(sid)
            if due is not None and due > now:
                continue
            job = {"kind": RETENTION, "agent": agent, "idempotency_key": f"{sid}:{int(now // INTERVAL)}",
                   "payload": {"days": days}}
            if self.store.fire_schedule(sid, due, now + INTERVAL, job):
                queued += 1
        return queued


def delete_expired(store: Store, agent: str, days: float, now: float | None = None) -> list[str]:
    """Delete ``agent``'s conversations idle more than ``days`` days (at most ``BATCH``); their ids."""
    ids = store.expired_conversations(agent, (now or time.time()) - days * 86400, BATCH)
    for conversation_id in ids:
        store.delete_conversation(conversation_id)
    return ids


async def retention_job(ctx: JobContext, job: JobRecord) -> dict[str, Any]:
    """The ``retention`` job: ``delete_expired`` for its agent, recorded in the audit log when it deleted any."""
    from halguru import audit

    days = float(job["payload"]["days"])
    deleted = await asyncio.to_thread(delete_expired, ctx.store, job["agent"], days)
    if deleted:
        await asyncio.to_thread(audit.record, ctx.store, "worker", "conversation.retention", job["agent"],
                                {"days": days, "deleted": len(deleted), "conversations": deleted[:50]})
    return {"deleted": len(deleted)}
