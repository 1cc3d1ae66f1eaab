"""The store's records: what its methods take and return, as ``TypedDict``s (plain dict access, with types)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

CLAIMING = "…"
"""A checkpoint's ``resumed_by`` while a resume is starting (its claim held until ``claim_expires``)."""


class ConversationRecord(TypedDict):
    id: str
    agent: str
    title: str
    created: float
    updated: float
    active_agent: str | None  # the team member holding the conversation: the next user turn goes to it
    owner: str | None
    messages: NotRequired[int]  # listings and create_conversation: how many messages it holds
    taken_over_by: NotRequired[str | None]  # an operator answering as a human: the agent does not run meanwhile
    taken_over_since: NotRequired[float | None]


class ConversationFound(ConversationRecord):
    """A conversation in a search: its message count, its last run's status and its channel."""

    last_status: str | None  # None: no run yet
    channel: str | None  # the channel whose thread it is (twilio, email, job...); None: the API or web chat
    match: str | None  # with a text search: the first message (or the title) that matched


class MessageRecord(TypedDict):
    """A stored message with who wrote it and when."""

    seq: int
    role: str
    content: str
    tool_calls: list[dict[str, Any]]
    tool_call_id: str | None
    name: str | None
    run_id: str | None
    author: str | None  # None: the user or the agent; an operator's principal for a human's answer
    created: float


class MessageKeyRecord(TypedDict):
    """An ``Idempotency-Key`` of ``POST /v1/conversations/{id}/messages`` (``sql_message_keys``)."""

    owner: str  # the caller's principal ('' for none)
    conversation_id: str
    key: str
    request_hash: str  # of the message the key was first sent with
    status: str  # 'claimed' (its run not started yet), 'run' (run_id) or 'held' (taken over: for an operator)
    run_id: str | None
    created: float


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
    job_id: str | None  # the job that started it (the worker's runs and their continuations); None: no job


class RunListRecord(RunRecord):
    """A run in a listing, with its checkpoint (team and workflow runs) and who resumed it."""

    kind: str | None  # 'team', 'workflow' or 'agent' (a plain agent's continuation) when checkpointed
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
    resumed_by: str | None  # CLAIMING while a resume is starting, then the continuation run's id
    # The process starting the resume (boot id) and until when: a lease it renews. An expired claim (its process
    # died before the continuation started) reads as none: resumed_by None.
    claim_holder: str | None
    claim_expires: float | None


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
    # Once decided, the process starting its continuation (boot id) and until when: a lease it renews until the
    # continuation starts (continued_by). Expired with no continuation: its process died, another may take it
    # over. None when no continuation will come (a reject whose agent no longer loads).
    claim_holder: str | None
    claim_expires: float | None


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
    user_id: str | None  # the user it belongs to (its permissions are at most theirs); None: a key from before users


class UserRecord(TypedDict):
    """A person who signs in to serve mode (web session) and owns API keys."""

    id: str  # usr_...
    email: str | None  # lower-cased, unique
    name: str
    role: str  # admin, operator, developer or user (halguru_server.identity.roles)
    password_hash: str | None  # argon2; None: no local password (OIDC only, or not set yet)
    email_verified: bool
    totp_secret: str | None
    totp_enabled: bool
    totp_last: int | None  # the last TOTP time step accepted (a code is not accepted twice)
    disabled: bool
    failed_logins: int  # consecutive failed sign-ins
    locked_until: float | None
    created: float
    last_login: float | None


class IdentityRecord(TypedDict):
    """A sign-in identity at an OIDC provider, linked to a user."""

    provider: str
    subject: str  # the provider's ``sub``
    user_id: str
    email: str | None
    created: float


class WebSessionRecord(TypedDict):
    """A signed-in browser: only the SHA-256 of its cookie is stored."""

    id_hash: str
    user_id: str
    csrf: str  # the token its pages send back with every state change
    created: float
    last_seen: float  # the idle timeout counts from here
    expires: float  # the absolute timeout
    mfa_done: bool  # the second factor was passed (or is not needed)
    address: str | None
    user_agent: str | None
    revoked: float | None


class AuthTokenRecord(TypedDict):
    """A single-use token (email verification, password reset, invite, OIDC state): only its hash is stored."""

    token_hash: str
    purpose: str  # verify, reset, invite, oidc, ...
    user_id: str | None
    data: dict[str, Any]
    created: float
    expires: float
    used: float | None


def fair_key(owner: str | None, agent: str) -> str:
    """Who takes turns in a claim's fairness: a job's owner with its agent. By owner alone, one agent's flood (an
    inbox's thousand replies, a script's backlog) held back every other agent's jobs of the same owner (the
    channels' and schedules' jobs have none) until it was done."""
    return f"{owner or ''}|{agent}"


class JobRecord(TypedDict):
    """A queued unit of work (an agent turn for a channel message, a scheduled run, ...)."""

    seq: int  # the order jobs were queued in (the listing's cursor)
    id: str
    kind: str  # which handler runs it: 'run' (an agent turn, replied on a channel when the payload says so)
    agent: str
    queue_key: str | None  # jobs with one key run one at a time, oldest first (a conversation's messages)
    payload: dict[str, Any]
    status: str  # queued, running, done, dead (retries used up), cancelled
    attempts: int  # claims so far (a job whose worker died counts the attempt)
    max_attempts: int
    run_after: float  # not claimed before this (backoff after a failure, or a delayed job)
    idempotency_key: str | None  # unique: enqueuing the same key again returns the first job
    owner: str | None
    created: float
    started: float | None  # the first claim
    finished: float | None
    holder: str | None  # the worker holding its lease
    lease_expires: float | None
    last_error: str | None
    result: dict[str, Any] | None


class EffectRecord(TypedDict):
    """A side effect of a job (a run, an outbound message): recorded so a retried job does not repeat it."""

    job_id: str
    key: str
    state: str  # 'started' (attempted, outcome unknown if the worker died) or 'done'
    value: Any  # what the effect gave (a JSON value), None while started
    started: float
    updated: float


class ChannelMessageRecord(TypedDict):
    """A message a channel received or sent, with its delivery status (status callbacks update it)."""

    id: str  # the provider's id (Twilio MessageSid, email Message-ID)
    channel: str
    agent: str
    conversation_id: str | None
    direction: str  # 'in' or 'out'
    address: str  # the other party: where an inbound message's answers go (its sender, or email's Reply-To), an
    # outbound one's recipient
    body: str
    status: str  # received, queued, sent, delivered, failed, ... as the provider says
    job_id: str | None
    created: float
    updated: float
    error: NotRequired[str | None]  # why it failed, as the provider said (Twilio's 'error 30003: ...')


class OptOutRecord(TypedDict):
    """A sender who told a channel to stop (SMS STOP): nothing goes to them from ``ours`` until they opt in."""

    channel: str
    agent: str
    ours: str  # the number of ours they wrote to (opt-outs are per number at Twilio)
    sender: str
    reason: str  # what said so: the keyword (STOP), or the provider's refusal (twilio 21610)
    since: float


class AuditRecord(TypedDict):
    """An entry of the audit log: who did what to what, chained to the entry before it (``sql_audit``)."""

    seq: int  # 1, 2, 3... with no gaps: a missing number is a deleted entry
    time: float
    actor: str  # the principal: "user:usr_…", "key:…", "cli:<os user>", "dev", "anon:…"
    action: str  # "auth.sign_in", "user.role", "run.approve", "tool.call"...
    target: str  # what it acted on: a user, key, run, job or conversation id, a tool name
    details: dict[str, Any]
    address: str | None  # the client address, for requests
    alg: str  # "sha256", or "hmac-sha256" when HALGURU_AUDIT_KEY keyed it
    prev_hash: str
    hash: str


class AuditCheck(TypedDict):
    """What ``verify_audit`` found: ok, or the first broken entry's seq and why."""

    ok: bool
    entries: int  # the entries checked and found intact
    seq: int | None
    reason: str | None
    head: str  # the hash of the last intact entry (record it elsewhere to catch a truncated tail)


class DeploymentRecord(TypedDict):
    """One published version of an agent (``halguru publish``): its bundle's hash and manifest, who published
    it and when, and whether it is the version being served."""

    agent: str
    version: int  # 1, 2, ... per agent
    sha256: str  # of the bundle (tar.gz) as uploaded
    manifest: dict[str, Any]  # files and their hashes, tools, model, knowledge
    published_by: str | None  # the publisher's principal (``user:<id>``...); None: --dev
    created: float
    active: bool
    activated: float | None  # when it last became the served version


class PushSubscriptionRecord(TypedDict):
    """A browser that asked the web chat for notifications: its push service's endpoint and keys (RFC 8291)."""

    endpoint: str
    user_id: str
    p256dh: str  # the browser's P-256 public key (base64url)
    auth: str  # its 16-byte auth secret (base64url)
    session: str | None  # the web session (its id_hash) that subscribed: signed out, no more pushes
    created: float
    last_success: float | None
    last_failure: float | None
    failures: int  # failures in a row
