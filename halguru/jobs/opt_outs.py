"""Opt-outs (an SMS sender's STOP, or a provider refusing a reply as opted out): listed and cleared by an
operator, the same functions behind `halguru channels opt-outs|clear-opt-out`, the /v1 routes and the console.

An opt-out is per channel, agent, number of ours and sender (the store's ``channel_opt_outs``); the channel
records and forgets them as STOP and START come (``halguru.channels.twilio``). Clearing one by hand is for a
mistake (a STOP sent by someone else, a number that changed hands): it is audited, and Twilio itself still
refuses every message to a sender who texted STOP until they text START.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from halguru import audit
from halguru.errors import HalguruError

if TYPE_CHECKING:
    from halguru.store.base import Store
    from halguru.store.records import OptOutRecord

MAX_LISTED = 1000
PROVIDER_NOTE = {"twilio": "Twilio itself refuses messages to a sender who texted STOP until they text START"}


def list_opt_outs(store: Store, channel: str | None = None, agent: str | None = None,
                  limit: int = 100) -> list[OptOutRecord]:
    """The opt-outs, newest first, of ``channel`` and ``agent`` when given."""
    return store.list_opt_outs(channel or None, agent or None, limit=min(limit, MAX_LISTED))


def clear_opt_out(store: Store, channel: str, agent: str, sender: str, number: str | None = None, *,
                  actor: str | None = None, address: str | None = None) -> list[OptOutRecord]:
    """Forget ``sender``'s opt-outs of ``agent`` on ``channel`` (from ``number`` of ours only, when given), each
    audited (``opt_out.clear``, by ``actor``: None is the CLI's user); the ones cleared. Raises (one line) when
    there is none to clear."""
    from halguru.jobs.pipeline import store_key

    if not sender.strip() or not agent.strip():
        raise HalguruError("give the sender and the agent, as `halguru channels opt-outs` lists them")
    found = [r for r in store.list_opt_outs(channel, agent, store_key(sender.strip()), limit=MAX_LISTED)
             if number is None or r["ours"] == store_key(number.strip())]
    if not found:
        where = f" from {number}" if number else ""
        raise HalguruError(f"{sender} has not opted out of agent {agent}'s {channel} messages{where}; "
                           "`halguru channels opt-outs` lists who has")
    cleared = []
    for row in found:
        if store.set_opt_out(row["channel"], row["agent"], row["ours"], row["sender"], None):
            audit.record(store, actor, "opt_out.clear", f"{row['channel']}:{row['agent']}:{row['sender']}",
                         {"ours": row["ours"], "reason": row["reason"], "since": row["since"]}, address)
            cleared.append(row)
    return cleared
