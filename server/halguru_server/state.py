"""What one app holds (settings, agents, store, gate, metrics) and who is calling (API key or anonymous).

Every conversation, run and approval a request creates is owned by its principal (``Principal.owner``):
``user:<id>`` for a signed-in user and for that user's keys, ``key:<id>`` for a key without a user (its own role),
``anon:<session>`` for an anonymous web-chat session, None for --dev. A principal sees and acts only on
objects it owns (``Principal.owns``), unless its role has the resource's ``*_all`` permission (admins and
operators; a key of the admin or operator role; --dev). Objects of others answer 404, exactly like objects that do not
exist, so ids leak nothing. docs/identity.md has the roles and permissions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import Counter
from dataclasses import dataclass, field

from fastapi import Request

from halguru.channels.base import Channel
from halguru.jobs.pipeline import StoreSink
from halguru.store.base import Store
from halguru.store.records import UserRecord, WebSessionRecord
from halguru_server.agents import ServedAgent
from halguru_server.deployments import AgentRegistry
from halguru_server.errors import ApiError
from halguru_server.gate import ModelGate
from halguru_server.identity import roles, websessions
from halguru_server.inflight import InFlight
from halguru_server.keys import ApiKey, verify_key
from halguru_server.lifecycle import Lifecycle
from halguru_server.metrics import Metrics
from halguru_server.probes import OutageLog
from halguru_server.push import Pusher
from halguru_server.ratelimit import Limiter
from halguru_server.sessions import verify as verify_session
from halguru_server.settings import ServerSettings


@dataclass
class ServerState:
    settings: ServerSettings
    agents: AgentRegistry  # looked up per request: a publish swaps an agent, requests holding the old finish on it
    store: Store
    metrics: Metrics
    gate: ModelGate
    limiter: Limiter
    lifecycle: Lifecycle
    channels: dict[str, dict[str, Channel]] = field(default_factory=dict)  # agent -> channel name -> channel
    sink: StoreSink | None = None  # where channel webhooks hand messages (stored and queued once)
    pusher: Pusher | None = None  # the web chat's notifications (None: push.enabled is off)
    started: float = field(default_factory=time.time)
    worker_task: asyncio.Task[None] | None = None  # the in-process worker (None: --no-worker, or not started)
    store_log: OutageLog = field(default_factory=lambda: OutageLog("store check"))  # /readyz, /status: once an outage
    followers: Counter[str] = field(default_factory=Counter)  # client -> run streams it follows (follow.admit)
    in_flight: InFlight = field(default_factory=lambda: InFlight(0))  # requests per client (inflight.py)

    @property
    def draining(self) -> bool:
        """SIGTERM received: /readyz answers 503."""
        return self.lifecycle.draining

    def agent(self, name: str) -> ServedAgent:
        served = self.agents.get(name)
        if served is None:
            raise self.not_found(name)
        return served

    @staticmethod
    def not_found(name: str) -> ApiError:
        """The 404 for an agent that is not here, or that the caller may not use (``agent_for``): one answer."""
        return ApiError(404, f"no agent {name!r}; GET /v1/agents lists them")


@dataclass(frozen=True)
class Principal:
    """The caller: a signed-in user (web session), an API key (of a user, or with a role of its own), the --dev
    developer (key None, dev True) or an anonymous web-chat visitor (with ``session`` once the chat holds a
    session token). What it may do is ``permissions`` (docs/identity.md); routes ask ``can`` and ``owns``."""

    key: ApiKey | None
    client: str  # fairness and rate-limit bucket: the user id (browser and keys alike), an app key's id, else
    # the client address (queue share, followed streams): a person minting keys gets no more of either
    dev: bool = False
    session: str | None = None  # an anonymous web-chat session's id
    user: UserRecord | None = None  # the signed-in user, or the user the key belongs to
    web: WebSessionRecord | None = None  # the web session, when the request came with its cookie

    @property
    def anonymous(self) -> bool:
        return self.key is None and not self.dev and self.user is None

    @property
    def role(self) -> str | None:
        """The role whose permissions apply (a key may narrow them further); None for anonymous visitors."""
        if self.dev:
            return "admin"
        if self.user is not None:
            return self.user["role"]
        if self.key is not None:  # a key without a user: its scope is its role
            return self.key.scope
        return None

    @property
    def permissions(self) -> frozenset[str]:
        """The role's permissions; a user's key with scope ``user`` carries at most a developer's."""
        if self.dev:
            return roles.ALL_PERMISSIONS
        if self.role is None:
            return roles.ANONYMOUS
        granted = roles.permissions(self.role)
        if self.key is not None and self.user is not None and self.key.scope != "admin":
            granted &= roles.permissions("developer")
        return granted

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def owner(self) -> str | None:
        """What objects this principal creates are stored as belonging to (None: --dev, like the CLI): a user
        and their keys share ``user:<id>``."""
        if self.user is not None:
            return f"user:{self.user['id']}"
        if self.key is not None:
            return f"key:{self.key.id}"
        if self.session is not None:
            return f"anon:{self.session}"
        return None

    def sees_all(self, resource: str) -> bool:
        """Whether everyone's objects of ``resource`` (conversations, runs, approvals, jobs, keys) are this
        principal's to see, not only its own."""
        return self.dev or self.can(roles.OWNER_ALL[resource])

    def owner_filter_for(self, resource: str) -> str | None:
        """The ``owner=`` a store listing of ``resource`` gets: None (anyone's) when the role sees all."""
        if self.sees_all(resource):
            return None
        if self.owner is None:
            raise ApiError(401, "start a chat session first: POST /chat/api/session")
        return self.owner

    @property
    def label(self) -> str:
        """Who decided an approval, as recorded."""
        return self.owner or "dev"

    def owns(self, owner: str | None, resource: str = "conversations") -> bool:
        """Whether the object of ``resource`` stored as ``owner``'s is visible to this principal."""
        return self.sees_all(resource) or (self.owner is not None and owner == self.owner)

    def allows(self, served: ServedAgent) -> bool:
        if self.dev:
            return True
        if self.key is not None:
            return self.key.allows(served.name)
        if self.user is not None:
            return True
        return served.web_chat == "public"

    @property
    def agent_names(self) -> list[str] | None:
        """The agents this principal may use by name, served or not (None: any): what reaches the jobs of an
        agent no longer served, which stay their owner's to see and cancel. An anonymous visitor: none."""
        if self.dev or (self.key is None and self.user is not None):
            return None
        if self.key is not None:
            return list(self.key.agents) or None
        return []


def get_state(request: Request) -> ServerState:
    return request.app.state.halguru


async def state_of(request: Request) -> ServerState:
    """``get_state`` as a route dependency: async, so FastAPI calls it on the event loop (a plain function
    dependency costs a hop to a worker thread and back on every request)."""
    return get_state(request)


def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    # X-API-Key, or Azure OpenAI's api-key (what AzureOpenAI clients and Azure-configured tools send)
    return request.headers.get("x-api-key") or request.headers.get("api-key") or None


def client_address(request: Request, trusted: list[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
    X-Forwarded-For that is not one (the first would be whatever the client wrote)."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [_without_port(h.strip()) for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")
            if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return peer


def _without_port(hop: str) -> str:
    """An X-Forwarded-For entry's address: some proxies (Azure Application Gateway) add the client's source
    port, ``203.0.113.7:40001`` or ``[2001:db8::1]:443``, which would make each connection a client of its own."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    address, colon, port = hop.rpartition(":")
    return address if colon and port.isdigit() and "." in address and ":" not in address else hop


def rate_client(request: Request, trusted: list[str]) -> str:
    """Who a rate limit, a fair share or a cap counts a request against: the client's address, but for IPv6 its
    /64 (one host's, or one home's, usual allotment: counted per address, any such client had 2^64 budgets)."""
    return client_bucket(client_address(request, trusted))


def client_bucket(address: str) -> str:
    """An IPv6 address's /64 (an IPv4-mapped one's IPv4 address); anything else as it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def _trusted(address: str, trusted: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)


def resolve(request: Request) -> Principal:
    """Who is calling: --dev; an API key (Authorization: Bearer / X-API-Key); a web session cookie; an
    anonymous web-chat visitor (with the session its ``X-Chat-Session`` token names, if any). A key that is
    sent but not valid is refused, never treated as anonymous; a cookie of an ended session is ignored (the
    browser sends it along on its own). Cached on the request."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = _resolve(request)
    request.state.principal = principal
    return principal


def _resolve(request: Request) -> Principal:
    state = get_state(request)
    address = client_address(request, state.settings.trusted_proxies)
    if state.settings.dev:
        return Principal(None, address, dev=True)
    secret = _secret(request)
    if secret is not None:
        key = verify_key(state.store, secret)
        user = state.store.get_user(key.user_id) if key is not None and key.user_id else None
        if key is None or (key.user_id and (user is None or user["disabled"])):
            raise ApiError(401, "invalid key: unknown, revoked or expired", headers={"WWW-Authenticate": "Bearer"})
        # a person's keys are that person (as their browser is): one share of each budget, however many keys
        return Principal(key, f"user:{user['id']}" if user is not None else f"key:{key.id}", user=user)
    cookie = request.cookies.get(websessions.COOKIE)
    found = websessions.verify(state.store, cookie, state.settings.auth) if cookie else None
    if found is not None:  # an ended session's cookie is ignored: the browser sent it, not the person
        web, user = found
        return Principal(None, f"user:{user['id']}", user=user, web=web)
    token = request.headers.get("x-chat-session")
    session = verify_session(state.settings.session_secret or "", token) if token else None
    if token and session is None:
        raise ApiError(401, "invalid chat session; start a new one with POST /chat/api/session", "invalid_session")
    return Principal(None, client_bucket(address), session=session)


def agent_for(state: ServerState, principal: Principal, name: str) -> ServedAgent:
    """The agent ``name`` if the caller may use it. An anonymous caller gets the same 401 for an agent that
    does not exist as for one that needs a key, and a key limited to some agents (``--agents``) the same 404 for
    one it may not use as for one that does not exist (GET /v1/agents does not list it either), so the names of
    agents a caller may not use cannot be guessed."""
    served = state.agents.get(name)
    if served is not None and principal.allows(served):
        return served
    if principal.anonymous:
        raise ApiError(401, f"agent {name!r} needs you to sign in (/auth/login) or an API key for its web chat",
                       headers={"WWW-Authenticate": "Bearer"})
    raise state.not_found(name)
