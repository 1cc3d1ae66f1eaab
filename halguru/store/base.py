"""The store interface: every table is read and written through it, as typed records.

SQLite implements it (``halguru.store.sqlite``) and PostgreSQL (``halguru.store.postgres``), the same Protocol for
serve mode with several replicas, so nothing here names a SQLite type, a connection or SQL. Records are
``TypedDict``s (``halguru.store.records``): callers keep plain dict access (``run["status"]``) and get types.

Owners are opaque principal ids (``"key:ab12cd34"``, ``"anon:…"``); ``None`` is the local CLI user. A
listing's ``owner`` filter of ``None`` means "anyone's".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from halguru.store.records import (
    ApiKeyRecord,
    ApprovalRecord,
    AuditCheck,
    AuditRecord,
    AuthTokenRecord,
    ChannelMessageRecord,
    CheckpointRecord,
    ConversationFound,
    ConversationRecord,
    DeploymentRecord,
    EffectRecord,
    IdentityRecord,
    JobRecord,
    MessageKeyRecord,
    MessageRecord,
    OptOutRecord,
    PushSubscriptionRecord,
    RunListRecord,
    RunRecord,
    UserRecord,
    WebSessionRecord,
)

if TYPE_CHECKING:  # a listing (`halguru logs`) needs neither: their pydantic models cost 80 ms to import
    from halguru.agents.events import BaseEvent
    from halguru.models.base import Message


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
                           agents: Sequence[str] | None = None, after: tuple[float, str] | None = None,
                           owner: str | None = None, test_runs: bool = True) -> list[ConversationRecord]:
        """Newest activity first (``updated DESC, id``); ``after``: the rows after that ``(updated, id)``;
        ``test_runs=False`` leaves out the conversations `halguru test` and `eval` made."""
        ...
    def create_conversation(self, conversation_id: str, agent: str, title: str = "",
                            history: Sequence[Message] = (), *, owner: str | None = None,
                            max_owned: int | None = None, among: Sequence[str] | None = None
                            ) -> ConversationRecord:
        """A new conversation; ``max_owned``: TooManyConversations if ``owner`` already keeps that many (of
        the agents ``among``, if given)."""
        ...
    def share_in_flight(self, process: str, counts: Mapping[str, int], ttl: float) -> dict[str, int]:
        """Store this serve process's requests in flight by client for ``ttl`` s; the other processes' sums."""
        ...
    def check_owned_conversations(self, owner: str, max_owned: int, among: Sequence[str] | None = None) -> None:
        """TooManyConversations if ``owner`` keeps ``max_owned`` conversations (a job about to start one)."""
        ...
    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete it with everything in it; False if it was not there."""
        ...
    def rename_conversation(self, conversation_id: str, title: str) -> bool:
        """Give it a new title (its ``updated`` time stays: renaming is no activity); False if it was not there."""
        ...
    def get_messages(self, conversation_id: str) -> list[Message]: ...
    def count_messages(self, conversation_id: str) -> int:
        """How many messages the conversation holds (0 for an unknown one), without reading them."""
        ...
    def check_idle(self, conversation_id: str) -> None:
        """Raise ConversationBusy or ConversationPaused as ``start_run`` would: a check ahead of an answer whose
        status goes out before its run starts (a stream)."""
        ...

    # -- the messages endpoint's idempotency keys (sql_message_keys) -----------------------------------------
    def claim_message_key(self, owner: str, conversation_id: str, key: str,
                          request_hash: str) -> MessageKeyRecord | None:
        """Claim the key atomically: None if this call claimed it (go on, then ``start_message_key``,
        ``hold_message_key`` or ``release_message_key``); else the claim already there (a repeat). A key older
        than 24 hours, a claim whose run never started after 10 minutes, or one whose run is gone, is claimed
        anew."""
        ...
    def start_message_key(self, owner: str, conversation_id: str, key: str, run_id: str) -> bool: ...
    def hold_message_key(self, owner: str, conversation_id: str, key: str) -> bool: ...
    def release_message_key(self, owner: str, conversation_id: str, key: str) -> bool:
        """Delete a claim whose run did not start (the request failed first), so the key can be used again."""
        ...
    def forget_message_key(self, owner: str, conversation_id: str, key: str, run_id: str) -> bool:
        """Delete the key if its run is ``run_id`` (one a shutdown cut that cannot be resumed): a retry of the
        message then claims it again. False when another retry did so first."""
        ...
    def prune_message_keys(self, before: float | None = None) -> int:
        """Delete the keys claimed before ``before`` (default: 24 hours ago); how many."""
        ...

    # -- the admin console's conversations (sql_console) ----------------------------------------------------
    def search_conversations(self, *, agents: Sequence[str] | None = None, owner: str | None = None,
                             channel: str | None = None, since: float | None = None, until: float | None = None,
                             status: str | None = None, text: str | None = None, limit: int = 50,
                             after: tuple[float, str] | None = None) -> list[ConversationFound]:
        """Newest activity first, narrowed by agents, owner, channel ('api': none), last activity in
        [since, until), the last run's status and text in the title or a message; ``after`` as in
        ``list_conversations``."""
        ...
    def conversation_messages(self, conversation_id: str, offset: int = 0,
                              limit: int | None = None) -> list[MessageRecord]:
        """The messages in order (``seq``), with their authors and times: ``limit`` of them (None: all) from
        position ``offset``."""
        ...
    def conversation_tail(self, conversation_id: str, limit: int, before: int | None = None) -> list[MessageRecord]:
        """The last ``limit`` messages before seq ``before`` (None: to the end), in order (the newest page first)."""
        ...
    def conversation_chars(self, conversation_id: str) -> int: ...
    def take_over(self, conversation_id: str, by: str | None) -> str | None:
        """Give the conversation to operator ``by`` (None: back to the agent); who holds it afterwards (a holder
        other than ``by`` keeps it), "" for an unknown conversation."""
        ...
    def append_message(self, conversation_id: str, role: str, content: str, *, author: str | None = None,
                       if_taken_over: bool = False, when_idle: bool = False,
                       tools: Message | None = None) -> int | None:
        """A message added without a run; its seq, or None (no such conversation; ``if_taken_over`` and no
        operator holds it). ``when_idle``: raise ConversationBusy/ConversationPaused as ``start_run`` does.
        ``tools``: the message whose tool calls, tool_call_id and name are stored with it."""
        ...
    def expired_conversations(self, agent: str, before: float, limit: int = 200) -> list[str]: ...

    # -- runs and events ------------------------------------------------------------
    def start_run(self, run_id: str, conversation_id: str, agent: str, model: str, input: str, *,
                  owner: str | None = None, existing: bool = False, resumes: str | None = None,
                  replaces: str | None = None, job_id: str | None = None) -> list[Message] | None:
        """Record the run as running (creating its conversation if new); the conversation's messages so far.
        ``existing``: the conversation must exist; None, and nothing recorded, when it does not. Raises
        ConversationBusy while a run answers in it, ConversationPaused while an approval is pending in it
        (not for a continuation: ``resumes`` names the run whose decided approval or checkpoint it goes on
        from, and whose job it carries on). ``replaces``: the run a resume goes on from, whose messages leave
        the conversation (the continuation stores them again). ``job_id``: the job that started the run; a
        retry of it takes back that job's failed or cut turn when it ends the conversation (asked once)."""
        ...
    def record_events(self, run_id: str, events: Sequence[BaseEvent]) -> None: ...
    def finish_run(self, run_id: str, conversation_id: str, summary: Mapping[str, Any],
                   events: Sequence[BaseEvent], new_messages: Sequence[Message],
                   active_agent: str | None = None) -> None: ...
    def list_runs(self, limit: int = 20, agent: str | None = None, conversation_id: str | None = None, *,
                  status: str | None = None, agents: Sequence[str] | None = None,
                  owner: str | None = None, since: float | None = None,
                  test_runs: bool = True, job_id: str | None = None) -> list[RunListRecord]:
        """Newest first; ``since`` keeps runs started at or after it, ``test_runs=False`` leaves out the runs
        `halguru test` made, ``job_id`` keeps the runs of that job."""
        ...
    def get_run(self, run_id: str) -> RunRecord: ...
    def request_cancel(self, run_id: str) -> str:
        """Ask the process holding the running run to stop it (any process on this database; it does within
        ``CANCEL_POLL`` seconds); the run's status as read: 'running' when asked, else how it ended (nothing
        asked). StoreError for an unknown run."""
        ...
    def watch_cancel(self, run_id: str, on_cancel: Callable[[], None]) -> None:
        """Call ``on_cancel`` once (on a store thread) when someone asks to stop the run this process runs,
        until it finishes."""
        ...
    def run_agents(self) -> list[str]:
        """The names of the agents that have runs stored, sorted."""
        ...
    def run_statuses(self, conversation_id: str) -> dict[str, str]:
        """The conversation's runs' statuses by run id (a lapsed lease reads 'interrupted')."""
        ...
    def get_events(self, run_id: str, after: int = -1, *, history: bool = True) -> list[dict[str, Any]]:
        """A run's events in order, those numbered after ``after`` (-1: all); model calls' history expanded
        (``history=False``: the stored marker kept, the conversation's messages not read)."""
        ...
    def reap_expired_runs(self) -> int: ...
    def prune_runs(self, before: float) -> int:
        """Delete the runs started before ``before`` (not those still running, waiting for approval or
        interrupted with a checkpoint to resume from) with their events, approvals and checkpoints, the conversations
        left without a run, and the jobs finished before ``before`` (done, dead or cancelled), in one
        transaction; how many runs."""
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
                        arguments_after: Mapping[str, Any] | None = None, continues: bool = True) -> bool: ...
    def take_over_approval(self, run_id: str) -> bool:
        """Claim a decided approval's continuation whose deciding process died before it started."""
        ...
    def release_approval(self, run_id: str) -> None: ...
    def set_approval_continued_by(self, run_id: str, by: str) -> None: ...

    # -- API keys (serve mode; only a hash of each key is kept) ------------------------------
    def create_key(self, key_id: str, name: str, prefix: str, key_hash: str, agents: Sequence[str] = (),
                   expires: float | None = None, scope: str = "user", *,
                   user_id: str | None = None) -> ApiKeyRecord | None:
        """The new key; None, and nothing stored, when another key has the id ``key_id``."""
        ...
    def list_keys(self, user_id: str | None = None) -> list[ApiKeyRecord]:
        """Every key, or the keys of ``user_id``."""
        ...
    def revoke_keys(self, key_ids: Sequence[str]) -> int: ...
    def get_key(self, key_id: str) -> ApiKeyRecord | None: ...
    def key_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...
    def touch_key(self, key_id: str) -> None: ...
    def rate_hit(self, bucket: str, limit: int, window_s: float) -> float | None:
        """One hit in a sliding window shared by every process: None if allowed, else seconds to wait."""
        ...

    # -- jobs (the worker's durable queue) -------------------------------------------------------
    def enqueue_job(self, kind: str, agent: str, payload: Mapping[str, Any], *, queue_key: str | None = None,
                    idempotency_key: str | None = None, owner: str | None = None, delay: float = 0.0,
                    max_attempts: int = 5, max_waiting: int | None = None) -> tuple[JobRecord, bool]:
        """Queue a job; with an ``idempotency_key`` already used, the first job and False (nothing queued).
        TooManyJobs when ``owner`` already has ``max_waiting`` jobs queued."""
        ...
    def claim_job(self, holder: str, lease: float, agents: Sequence[str] | None = None,
                  served: Sequence[str] = ()) -> JobRecord | None:
        """Take a runnable job (its ``run_after`` passed, no earlier unfinished job with its queue key) or one
        whose holder's lease expired, for ``lease`` seconds; None when there is none. Fair across owners and
        agents (``records.fair_key``): the oldest of an owner's agent with none running and not among ``served``
        (the fair keys this worker served last) first, then of those with the fewest running, then the oldest.
        A job claimed more than ``max_attempts`` times is dead instead."""
        ...
    def renew_job(self, job_id: str, holder: str, lease: float) -> bool:
        """Extend the lease; False when ``holder`` lost the job (cancelled, or its lease expired and another
        worker took it)."""
        ...
    def finish_job(self, job_id: str, holder: str, result: Mapping[str, Any] | None = None) -> bool: ...
    def fail_job(self, job_id: str, holder: str, error: str, retry_in: float | None) -> str:
        """Record a failed attempt: queued again after ``retry_in`` seconds (None: no retry, dead). The new
        status, or '' when ``holder`` no longer held it."""
        ...
    def release_job(self, job_id: str, holder: str, reason: str, delay: float = 0.0) -> bool:
        """Give a running job back unfinished (its worker is stopping, its conversation is busy): queued again
        ``delay`` seconds from now, the attempt it was on not counted, ``reason`` as its last error. False when
        ``holder`` no longer held it."""
        ...
    def let_go_job(self, job_id: str, holder: str) -> bool:
        """``holder`` stopped a job that was cancelled while it ran: the next job of its queue key may start
        (until then, or until its lease passes, a cancelled running job holds its key). False when it was not
        ``holder``'s or is let go already."""
        ...
    def get_job(self, job_id: str) -> JobRecord | None: ...
    def find_job(self, job_id_or_prefix: str) -> JobRecord | None: ...
    def list_jobs(self, limit: int = 20, *, status: str | None = None, agent: str | None = None,
                  agents: Sequence[str] | None = None, owner: str | None = None,
                  before: int | None = None) -> list[JobRecord]:
        """Newest first (``seq DESC``); ``before``: the jobs older than that seq."""
        ...
    def retry_job(self, job_id: str, *, owner: str | None = None, max_waiting: int | None = None) -> bool:
        """A dead or cancelled job queued again with its attempts reset: now, or (cancelled while running) once
        its old holder's lease has passed, or (cancelled before it ever ran) at the time it was queued for, if
        that is still ahead; False otherwise. TooManyJobs when ``owner`` already has
        ``max_waiting`` jobs queued (as ``enqueue_job``: else cancel and retry would pass the cap)."""
        ...
    def cancel_job(self, job_id: str) -> bool:
        """A queued or running job cancelled; False otherwise. A running one's run is asked to stop (as
        ``request_cancel``: its process does within ``CANCEL_POLL``), and its worker, learning it then or at its
        next renewal, stops the job and lets go (``let_go_job``); until then the job still holds its queue key."""
        ...
    def cancel_queued_jobs(self, agent: str, *, owner: str | None = None) -> int:
        """Every queued job of ``agent`` (of ``owner``, when given) cancelled (a flood to clear: one ``cancel_job``
        each took a CLI call each); how many. Running ones go on: cancel them one by one."""
        ...
    def retry_dead_jobs(self, agents: Sequence[str] | None = None, *, owner: str | None = None,
                        max_waiting: int | None = None) -> tuple[int, int]:
        """Every dead job (of these agents; of ``owner``) queued again now, its attempts reset, oldest first; with
        ``max_waiting``, only as many of each owner's (of ``owner``'s, when given) as leave that owner at most
        ``max_waiting`` jobs queued (jobs of no owner are nobody's to cap). How many were queued, and how many
        stay dead."""
        ...
    def job_stats(self) -> dict[str, float]:
        """Counts by status, and ``oldest_queued_s``: how long the oldest runnable job has waited."""
        ...
    def wait_for_jobs(self, timeout: float, woken: threading.Event) -> None:
        """Block until the store may hold a new job (another process wrote to it), ``woken`` is set, or
        ``timeout`` seconds pass: how an idle worker hears of jobs queued elsewhere without busy polling."""
        ...
    def job_next_due(self) -> float | None:
        """When the next queued job becomes runnable (None: none queued): idle workers sleep until then."""
        ...

    # -- job side effects (at-least-once jobs whose effects happen once) ---------------------------------
    def begin_effect(self, job_id: str, key: str) -> EffectRecord | None:
        """Record that the effect is being attempted; the earlier record if there is one (done, or started
        by an attempt that died), else None and the caller performs it."""
        ...
    def finish_effect(self, job_id: str, key: str, value: Any) -> None: ...

    # -- channels ----------------------------------------------------------------------------------------
    def thread_conversation(self, channel: str, agent: str, thread: str, *, title: str = "",
                            owner: str | None = None) -> str:
        """The conversation for one thread of a channel (an SMS sender, an email thread), created on first
        use; the same id for every caller, even racing ones."""
        ...
    def retire_thread(self, channel: str, agent: str, thread: str, conversation_id: str) -> bool:
        """The thread's next message starts a new conversation (``conversation_id`` is full): the old one keeps
        its row under another thread name, so it stays listed under the channel; False when the thread names
        another conversation by now (a racing retire: nothing changed)."""
        ...
    def claim_thread(self, channel: str, agent: str, threads: Sequence[str],
                     owner: str | None) -> tuple[str, str] | None:
        """The first of ``threads`` that names a conversation of ``owner`` (no operator holding it), claimed:
        (thread, conversation id), and the thread is no longer found (a racing claim gets None) until
        ``set_thread``. The OpenAI endpoint's stateless chats, whose thread is their messages' hash."""
        ...
    def set_thread(self, channel: str, agent: str, conversation_id: str, thread: str | None) -> None:
        """The conversation's thread on ``channel`` is ``thread`` from now on (None, or one another conversation
        holds: a thread no claim finds, keeping the conversation listed under the channel)."""
        ...
    def record_channel_message(self, message: ChannelMessageRecord) -> bool:
        """Store a received or sent message; True when it is new. A message known only from a delivery report
        (which can beat the sender's own record) gets the rest, keeping its status."""
        ...
    def update_channel_message(self, channel: str, message_id: str, status: str | None = None, *,
                               conversation_id: str | None = None, error: str | None = None) -> bool:
        """Set a stored message's status, conversation and/or why it failed (``error=""`` forgets why: it went
        out after all); False for an unknown message."""
        ...
    def forget_channel_message(self, channel: str, message_id: str) -> bool:
        """Delete one stored message (a placeholder that stood for a reply not sent, once it went out); False for
        an unknown one."""
        ...
    def count_channel_answers(self, channel: str, agent: str, address: str, since: float,
                              body: str | None = None) -> int:
        """How many messages from ``address`` (where their answers go) ``agent`` accepted for an answer on
        ``channel`` since ``since`` (epoch seconds), by any process sharing this store; only those saying
        ``body``, if given."""
        ...
    def get_channel_message(self, channel: str, message_id: str) -> ChannelMessageRecord | None: ...
    def list_channel_messages(self, conversation_id: str) -> list[ChannelMessageRecord]: ...
    def set_opt_out(self, channel: str, agent: str, ours: str, sender: str, reason: str | None) -> bool:
        """Remember that ``sender`` opted out of what ``agent`` sends from ``ours`` (``reason``: what said so; an
        earlier one is kept), or forget it (None: they opted back in); True when that changed something."""
        ...
    def get_opt_out(self, channel: str, agent: str, ours: str, sender: str) -> OptOutRecord | None: ...
    def list_opt_outs(self, channel: str | None = None, agent: str | None = None, sender: str | None = None,
                      limit: int = 100) -> list[OptOutRecord]:
        """The opt-outs, newest first; ``channel``, ``agent`` and ``sender`` narrow them."""
        ...

    # -- schedules -----------------------------------------------------------------------------------------
    def schedule_next(self, schedule_id: str) -> float | None:
        """When the schedule is next due, as stored (None: never seen)."""
        ...
    def waiting_job(self, key_prefix: str) -> JobRecord | None:
        """A queued job (not started yet, or waiting to be tried again) whose idempotency key starts with
        ``key_prefix``: a schedule's earlier run still waiting, which a later due time does not queue again."""
        ...
    def fire_schedule(self, schedule_id: str, due: float | None, next_due: float,
                      job: Mapping[str, Any] | None) -> bool:
        """Move the schedule from ``due`` (its stored next time; None: first seen) to ``next_due`` and, when
        ``job`` is given, queue it (``enqueue_job`` keyword arguments plus kind, agent, payload), in one
        transaction; False when another worker moved it first (nothing queued)."""
        ...


    # -- identity (serve mode's users; halguru_server.identity holds the rules) ----------------------------
    def create_user(self, user_id: str, email: str | None, name: str, role: str, *,
                    password_hash: str | None = None, email_verified: bool = False) -> UserRecord | None:
        """A new user; None when another user has the email."""
        ...
    def get_user(self, user_id: str) -> UserRecord | None: ...
    def user_by_email(self, email: str) -> UserRecord | None: ...
    def list_users(self, limit: int | None = None, *, after: tuple[float, str] | None = None,
                   text: str | None = None, locked_after: float | None = None) -> list[UserRecord]:
        """Oldest first (``created, id``): all, or ``limit`` after ``after`` (the last row's ``(created, id)``,
        a keyset); ``text`` keeps those whose email or name holds it, in any case; ``locked_after`` those locked
        until after that time."""
        ...
    def count_users(self, role: str | None = None) -> int: ...
    def update_user(self, user_id: str, *, keep_an_admin: bool = False, **fields: Any) -> bool:
        """Set email, name, role, password_hash, email_verified, totp_secret, totp_enabled, disabled or
        last_login; False for an unknown user, ValueError for an email another user has. ``keep_an_admin``:
        ``LastAdmin`` (a ValueError; nothing changed) when the user is the last enabled admin, checked in the
        write's own transaction."""
        ...
    def record_login_failure(self, user_id: str, max_failures: int, base_s: float, cap_s: float) -> UserRecord:
        """Count a failed sign-in and lock the account (doubling) from the ``max_failures``-th on."""
        ...
    def claim_login_attempt(self, user_id: str, max_failures: int, base_s: float,
                            cap_s: float) -> UserRecord | None:
        """Count an attempt before it is checked, as ``record_login_failure``, unless the account is locked: then
        None and nothing counted (atomic, so concurrent guesses cannot all pass a lock read before they count)."""
        ...
    def release_login_attempt(self, user_id: str) -> None:
        """Take back one claimed attempt that was right but is not a finished sign-in (a second factor follows)."""
        ...
    def record_login_success(self, user_id: str) -> None: ...
    def unlock_user(self, user_id: str) -> bool:
        """Clear the failure count and lock (an admin's unlock, a finished password reset); False: no such user."""
        ...
    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Accept a TOTP time step once (False: used already, or older than the last one used)."""
        ...
    def set_totp(self, user_id: str, secret: str | None, enabled: bool) -> None: ...
    def link_identity(self, provider: str, subject: str, user_id: str, email: str | None = None) -> bool: ...
    def get_identity(self, provider: str, subject: str) -> IdentityRecord | None: ...
    def set_identity_email(self, provider: str, subject: str, email: str | None) -> bool: ...
    def list_identities(self, user_id: str) -> list[IdentityRecord]: ...
    def unlink_identity(self, provider: str, subject: str) -> bool: ...
    def create_web_session(self, session: WebSessionRecord) -> None: ...
    def get_web_session(self, id_hash: str) -> WebSessionRecord | None: ...
    def touch_web_session(self, id_hash: str, last_seen: float, *, mfa_done: bool | None = None) -> bool: ...
    def list_web_sessions(self, user_id: str) -> list[WebSessionRecord]: ...
    def revoke_web_sessions(self, user_id: str | None = None, id_hashes: Sequence[str] = (), *,
                            keep: str | None = None) -> int: ...
    def prune_web_sessions(self, before: float) -> int: ...
    def create_auth_token(self, token_hash: str, purpose: str, user_id: str | None,
                          data: Mapping[str, Any] | None, expires: float) -> None: ...
    def get_auth_token(self, token_hash: str, purpose: str) -> AuthTokenRecord | None:
        """The token, if unused, unexpired and of this purpose, left as it is (check before spending it)."""
        ...
    def consume_auth_token(self, token_hash: str, purpose: str) -> AuthTokenRecord | None:
        """Atomically mark the token used and return it, if unused, unexpired and of this purpose."""
        ...
    def revoke_auth_tokens(self, user_id: str, purpose: str) -> int: ...
    def set_recovery_codes(self, user_id: str, code_hashes: Sequence[str]) -> None: ...
    def use_recovery_code(self, user_id: str, code_hash: str) -> bool: ...
    def recovery_codes_left(self, user_id: str) -> int: ...

    # -- audit log (append-only, hash-chained; halguru.audit records into it) -----------------------------
    def append_audit(self, actor: str, action: str, target: str = "", details: Mapping[str, Any] | None = None,
                     address: str | None = None, *, key: bytes | None = None) -> AuditRecord:
        """Append one entry chained to the newest, in one transaction that serializes every writer."""
        ...
    def list_audit(self, limit: int = 50, *, action: str | None = None, actor: str | None = None,
                   since: float | None = None, before: int | None = None,
                   until: float | None = None) -> list[AuditRecord]:
        """Newest first; ``action`` ending in "." is a prefix; ``since`` <= time < ``until``; ``before`` (a seq)
        is the cursor."""
        ...
    def verify_audit(self, *, key: bytes | None = None, batch: int = 1000) -> AuditCheck:
        """Walk the whole chain: ok, or the first broken entry."""
        ...


    # -- deployments (published agent bundles; halguru_server.deployments) -------------------------------
    def create_deployment(self, agent: str, sha256: str, manifest: Mapping[str, Any], bundle: bytes,
                          published_by: str | None) -> DeploymentRecord:
        """The next version of ``agent``, stored with its bundle and made the active one (one transaction)."""
        ...
    def activate_deployment(self, agent: str, version: int) -> DeploymentRecord | None:
        """Make ``version`` the active one (the others inactive); None when there is no such version."""
        ...
    def deactivate_deployment(self, agent: str) -> DeploymentRecord | None:
        """Serve no version of ``agent`` (unpublished; its versions stay stored); the version that was active, or
        None when none was."""
        ...
    def list_deployments(self, agent: str | None = None) -> list[DeploymentRecord]:
        """Every version (of ``agent``, else of all agents), newest first; bundles are not read."""
        ...
    def active_deployments(self) -> dict[str, tuple[int, str]]:
        """Each published agent's active version and bundle hash: what replicas poll (one small query)."""
        ...
    def deployment_bundle(self, agent: str, version: int) -> bytes | None: ...
    def delete_deployments(self, agent: str, versions: Sequence[int]) -> list[int]:
        """Delete these versions of ``agent`` with their bundles, never the active one; the versions deleted."""
        ...

    # -- Web Push (the web chat's notifications; sql_push, halguru_server.push) ---------------------------
    def save_push_subscription(self, endpoint: str, user_id: str, p256dh: str, auth: str, session: str | None,
                               keep: int = 20) -> None:
        """Subscribe one browser (an endpoint) for ``user_id`` (taking it over from whoever had it); the user's
        oldest beyond ``keep`` are dropped."""
        ...
    def list_push_subscriptions(self, user_id: str) -> list[PushSubscriptionRecord]: ...
    def delete_push_subscription(self, endpoint: str, user_id: str | None = None) -> bool: ...
    def record_push(self, endpoint: str, ok: bool) -> None: ...
    def server_secret(self, name: str, make: Callable[[], str]) -> str:
        """The stored secret ``name``, made with ``make()`` and stored by the first caller (any replica)."""
        ...


TraceStore = Store  # the earlier name, kept so imports keep working
