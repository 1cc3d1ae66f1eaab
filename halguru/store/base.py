"""The store interface: every table is read and written through it, as typed records.

SQLite implements it (``halguru.store.sqlite``); a PostgreSQL store will implement the same Protocol for
serve mode with several replicas, so nothing here names a SQLite type, a connection or SQL. Records are
``TypedDict``s: callers keep plain dict access (``run["status"]``) and get types.

Owners are opaque principal ids (``"key:ab12cd34"``, ``"anon:…"``); ``None`` is the local CLI user. A
listing's ``owner`` filter of ``None`` means "anyone's".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, Protocol, TypedDict

from halguru.agents.events import BaseEvent
from halguru.models.base import Message


class ConversationRecord(TypedDict):
    id: str
    agent: str
    title: str
    created: float
    updated: float
    active_agent: str | None  # the team member holding the conversation: the next user turn goes to it
    owner: str | None
    messages: NotRequired[int]  # listings and create_conversation: how many messages it holds


class RunRecord(TypedDict):
    id: str
    conversation_id: str
    agent: str
    model: str
    input: str
    output: str
    status: str  # a 'running' run whose lease expired reads 'interrupted'
    error: str | None
    started: float
    finished: float | None
    duration_ms: float | None
    steps: int
    prompt_tokens: int
    completion_tokens: int
    owner: str | None
    holder: str | None  # the boot id of the process running it
    lease_expires: float | None  # a running run is alive while its holder renews this


class RunListRecord(RunRecord):
    """A run in a listing, with its checkpoint (team and workflow runs) and who resumed it."""

    kind: str | None  # 'team' or 'workflow' when checkpointed
    checkpoint: str | None  # the label of its last checkpoint
    resumed_by: str | None


class CheckpointRecord(TypedDict):
    run_id: str
    kind: str
    conversation_id: str
    agent_path: str | None
    model: str | None
    input: str
    label: str
    state: dict[str, Any]
    updated: float
    resumed_by: str | None  # '…' while a resume is starting, then the continuation run's id


class ApprovalRecord(TypedDict):
    run_id: str
    conversation_id: str
    agent: str
    agent_path: str | None
    model: str | None
    input: str
    call: str  # the pending ToolCallRequest, JSON
    messages: str  # the paused run's messages so far, JSON list
    status: str  # pending, approved or rejected
    reason: str | None
    continued_by: str | None
    created: float
    resolved: float | None  # when it was decided
    owner: str | None
    decided_by: str | None
    arguments_before: str | None  # JSON: the call's arguments as the model gave them
    arguments_after: str | None  # JSON: what ran (differs after an edit; None when rejected)


class ApiKeyRecord(TypedDict):
    id: str
    name: str
    prefix: str
    agents: list[str]  # empty: every agent
    scope: str  # 'user', or 'admin': an operator key that acts on every principal's objects
    created: float
    expires: float | None
    revoked: float | None
    last_used: float | None


class Store(Protocol):
    """What every store implements. Writes that belong together are one transaction."""

    # -- lifecycle --------------------------------------------------------------
    def close(self) -> None: ...
    def ping(self) -> None:
        """Raise StoreError unless the database answers and accepts writes."""
        ...

    # -- conversations ------------------------------------------------------------
    def get_conversation(self, conversation_id: str) -> ConversationRecord | None: ...
    def list_conversations(self, limit: int = 20, agent: str | None = None, *,
                           agents: Sequence[str] | None = None, offset: int = 0,
                           owner: str | None = None) -> list[ConversationRecord]: ...
    def create_conversation(self, conversation_id: str, agent: str, title: str = "",
                            history: Sequence[Message] = (), *, owner: str | None = None) -> ConversationRecord: ...
    def delete_conversation(self, conversation_id: str) -> None: ...
    def get_messages(self, conversation_id: str) -> list[Message]: ...

    # -- runs and events ------------------------------------------------------------
    def start_run(self, run_id: str, conversation_id: str, agent: str, model: str, input: str, *,
                  owner: str | None = None) -> None: ...
    def record_events(self, run_id: str, events: Sequence[BaseEvent]) -> None: ...
    def finish_run(self, run_id: str, conversation_id: str, summary: Mapping[str, Any],
                   events: Sequence[BaseEvent], new_messages: Sequence[Message],
                   active_agent: str | None = None) -> None: ...
    def list_runs(self, limit: int = 20, agent: str | None = None, conversation_id: str | None = None, *,
                  status: str | None = None, agents: Sequence[str] | None = None,
                  owner: str | None = None, since: float | None = None,
                  test_runs: bool = True) -> list[RunListRecord]:
        """Newest first; ``since`` keeps runs started at or after it, ``test_runs=False`` leaves out the runs
        `halguru test` made."""
        ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def get_events(self, run_id: str) -> list[dict[str, Any]]: ...
    def reap_expired_runs(self) -> int: ...
    def prune_runs(self, before: float) -> int:
        """Delete the runs started before ``before`` (not those still running) with their events, approvals
        and checkpoints, and the conversations left without a run, in one transaction; how many runs."""
        ...

    # -- checkpoints (durable team and workflow runs) ---------------------------------
    def start_checkpoint(self, run_id: str, kind: str, conversation_id: str, agent_path: str | None,
                         model: str | None, input: str) -> None: ...
    def save_checkpoint(self, run_id: str, label: str, state: Mapping[str, Any],
                        events: Sequence[BaseEvent]) -> None: ...
    def get_checkpoint(self, run_id: str) -> CheckpointRecord | None: ...
    def claim_checkpoint(self, run_id: str) -> bool: ...
    def set_checkpoint_resumed_by(self, run_id: str, by: str | None) -> None: ...

    # -- approvals (paused runs) ----------------------------------------------------------
    def save_pending(self, run_id: str, conversation_id: str, agent: str, agent_path: str | None,
                     model: str | None, input: str, call_json: str, messages_json: str,
                     owner: str | None = None) -> None: ...
    def list_pending(self, owner: str | None = None, agents: Sequence[str] | None = None
                     ) -> list[ApprovalRecord]: ...
    def find_approval(self, run_id_or_prefix: str) -> ApprovalRecord | None: ...
    def decide_approval(self, run_id: str, status: str, reason: str | None, decided_by: str | None = None,
                        arguments_after: Mapping[str, Any] | None = None) -> bool: ...
    def set_approval_continued_by(self, run_id: str, by: str) -> None: ...

    # -- API keys (serve mode; only a hash of each key is kept) ------------------------------
    def create_key(self, key_id: str, name: str, prefix: str, key_hash: str, agents: Sequence[str] = (),
                   expires: float | None = None, scope: str = "user") -> ApiKeyRecord: ...
    def list_keys(self) -> list[ApiKeyRecord]: ...
    def revoke_keys(self, key_ids: Sequence[str]) -> int: ...
    def key_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...
    def touch_key(self, key_id: str) -> None: ...
    def rate_hit(self, bucket: str, limit: int, window_s: float) -> float | None:
        """One hit in a sliding window shared by every process: None if allowed, else seconds to wait."""
        ...


TraceStore = Store  # the earlier name, kept so imports keep working
