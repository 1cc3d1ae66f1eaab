"""``Idempotency-Key`` on ``POST /v1/conversations/{id}/messages``: a client that timed out and retries the same
message gets the first request's answer instead of a second turn (as Stripe's idempotency keys do).

The key is scoped by the caller (its owner) and the conversation, and claimed in the store
(``sql_message_keys``) before the run is queued; the run's id is recorded when it starts. A repeat:

- whose first request's run ended: 200 with that run (``RunOut``: same run_id, output, status); with
  ``stream: true``, its stored events replayed as SSE (``GET /v1/runs/{id}/events`` from the start: tokens are
  not stored, the answer comes whole in model_result and run_finished). Nothing runs and nothing is stored again;
- while the first request is still queued or running: 409 with ``Retry-After``;
- with another message under the same key: 422;
- after the first failed before its run started (the queue was full, the conversation vanished, the client went
  away before its stream's body began): as a first request, since the failure released the claim. A client that
  leaves while its keyed run is queued does not cancel it: the run goes on, and a repeat is 409 until it ends.

A first run that a server shutdown interrupted answers 409 when it can be resumed (a team's or workflow's: ``POST
/v1/runs/{id}/resume``); a plain agent's cannot, so the repeat runs the message again. Keys last 24 hours; they go
with their conversation.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from halguru.agents.events import Event
from halguru.errors import StoreError
from halguru.store.records import MessageKeyRecord
from halguru_server.errors import ApiError
from halguru_server.ops import error_shown
from halguru_server.schemas import RunOut, ToolCallOut, Usage
from halguru_server.service import UntilStarted
from halguru_server.state import Principal, ServerState

HEADER_DOC = ("Send the same key again to retry this message safely (1 to 200 printable ASCII characters; "
              "per caller and conversation, kept 24 hours): a repeat gets the first request's run (200, same "
              "run_id; with stream=true its stored events as SSE) without running the agent or storing the "
              "message again; 409 (Retry-After) while that run is still going, 422 if the key came with another "
              "message. A first request that failed before its run started (503 queue full) leaves the key unused.")
_KEY = re.compile(r"^[\x20-\x7e]{1,200}$")
RETRY_AFTER = "1"
ENDED = ("ok", "failed", "cancelled", "limited", "paused")  # RunOut's statuses


@dataclass(frozen=True)
class Claim:
    owner: str
    conversation_id: str
    key: str

    @property
    def args(self) -> tuple[str, str, str]:
        return self.owner, self.conversation_id, self.key


def check_key(key: str) -> str:
    """The header's value, or 400 for one that is empty, too long or not printable ASCII."""
    if not _KEY.match(key):
        what = "is empty" if not key else f"has {len(key)} characters" if len(key) > 200 else \
            "has a character that is not printable ASCII"
        raise ApiError(400, f"Idempotency-Key {what}: send 1 to 200 printable ASCII characters",
                       "invalid_idempotency_key")
    return key


def request_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


async def claim(state: ServerState, caller: Principal, conversation_id: str, key: str,
                content: str) -> tuple[Claim, MessageKeyRecord | None]:
    """Claim the key for this request: (the claim, None) to go on, or (the claim, the earlier request's record)
    for a repeat, checked to carry the same message (else 422)."""
    mine = Claim(caller.owner or "", conversation_id, check_key(key))
    digest = request_hash(content)
    earlier = await asyncio.to_thread(state.store.claim_message_key, *mine.args, digest)
    if earlier is not None and earlier["request_hash"] == digest and await asyncio.to_thread(_lost, state, earlier):
        await asyncio.to_thread(state.store.forget_message_key, *mine.args, earlier["run_id"] or "")  # unanswered
        earlier = await asyncio.to_thread(state.store.claim_message_key, *mine.args, digest)
    if earlier is not None and earlier["request_hash"] != digest:
        raise ApiError(422, "this Idempotency-Key was already used for another message in this conversation; "
                            "send a new key for a new message", "idempotency_key_reused")
    return mine, earlier


def _lost(state: ServerState, record: MessageKeyRecord) -> bool:
    """Whether the key's run was cut by a shutdown and cannot be resumed (a plain agent's: only team and workflow
    runs have checkpoints), so the message was never answered and nothing could finish it."""
    if record["status"] != "run" or record["run_id"] is None:
        return False
    try:
        run = state.store.get_run(record["run_id"])
    except StoreError:
        return False
    return run["status"] == "interrupted" and state.store.get_checkpoint(run["id"]) is None


async def release(state: ServerState, mine: Claim) -> None:
    """The request failed before its run started: the key can be used again. Shielded: a cancelled request
    still releases it."""
    await asyncio.shield(asyncio.to_thread(state.store.release_message_key, *mine.args))


def tracked(state: ServerState, mine: Claim, events: AsyncIterator[Event]) -> UntilStarted:
    """A keyed request's run events, recording the run's id with the key when it starts; a run that never starts
    releases the key (``UntilStarted``: also when the response closed before it asked for the first event)."""
    return UntilStarted(events, never=lambda: state.store.release_message_key(*mine.args),
                        on_start=lambda run_id: state.store.start_message_key(*mine.args, run_id))


def in_progress(record: MessageKeyRecord) -> ApiError:
    run = f" (run {record['run_id']})" if record["run_id"] else ""
    return ApiError(409, f"a request with this Idempotency-Key is still in progress{run}; retry later",
                    "idempotency_key_in_progress", headers={"Retry-After": RETRY_AFTER})


def stored_run(state: ServerState, caller: Principal, record: MessageKeyRecord) -> RunOut:
    """The earlier request's run as its answer was (RunOut), once it has ended; else 409."""
    run_id = record["run_id"]
    if record["status"] != "run" or run_id is None:
        raise in_progress(record)
    try:
        run = state.store.get_run(run_id)
    except StoreError:  # deleted meanwhile (with its conversation): as if never there
        raise ApiError(404, f"no conversation {record['conversation_id']!r}") from None
    if run["status"] == "running":
        raise in_progress(record)
    if run["status"] not in ENDED:  # interrupted by a shutdown: resumable, never answered
        raise ApiError(409, f"the run of the request with this Idempotency-Key ({run_id}) was {run['status']}; "
                            f"resume it with POST /v1/runs/{run_id}/resume", "idempotency_key_run_interrupted")
    error = run["error"]
    if caller.anonymous and error:  # as service.redacted showed it the first time
        error = f"the run ended {run['status']} (run {run_id})"
    error = error_shown(error, caller)  # and service.labelled
    events = state.store.get_events(run_id)
    return RunOut(run_id=run_id, conversation_id=run["conversation_id"], agent=run["agent"],
                  status=run["status"],  # one of ENDED
                  output=run["output"], error=error,
                  usage=Usage(prompt_tokens=run["prompt_tokens"], completion_tokens=run["completion_tokens"]),
                  tool_calls=[ToolCallOut(name=e["name"], arguments=e["arguments"], id=e["call_id"],
                                          client=e.get("client", False)) for e in events
                              if e["type"] == "tool_call"],
                  duration_ms=run["duration_ms"] or 0.0)
