"""What one app holds (settings, agents, store, gate, metrics) and who is calling (API key or anonymous).

Every conversation, run and approval a request creates is owned by its principal (``Principal.owner``):
``key:<id>`` for an API key, ``anon:<session>`` for an anonymous web-chat session, None for --dev. A principal
sees and acts only on objects it owns (``Principal.owns``); an admin-scope key and --dev act on all. Objects
of others answer 404, exactly like objects that do not exist, so ids leak nothing.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from fastapi import Request

from halguru.channels.base import Channel
from halguru.jobs.pipeline import StoreSink
from halguru.store.base import Store
from halguru_server.agents import ServedAgent
from halguru_server.errors import ApiError
from halguru_server.gate import ModelGate
from halguru_server.keys import ApiKey, verify_key
from halguru_server.lifecycle import Lifecycle
from halguru_server.metrics import Metrics
from halguru_server.ratelimit import Limiter
from halguru_server.sessions import verify as verify_session
from halguru_server.settings import ServerSettings


@dataclass
class ServerState:
    settings: ServerSettings
    agents: dict[str, ServedAgent]
    store: Store
    metrics: Metrics
    gate: ModelGate
    limiter: Limiter
    lifecycle: Lifecycle
    channels: dict[str, dict[str, Channel]] = field(default_factory=dict)  # agent -> channel name -> channel
    sink: StoreSink | None = None  # where channel webhooks hand messages (stored and queued once)
    started: float = field(default_factory=time.time)

    @property
    def draining(self) -> bool:
        """SIGTERM received: /readyz answers 503."""
        return self.lifecycle.draining

    def agent(self, name: str) -> ServedAgent:
        served = self.agents.get(name)
        if served is None:
            raise ApiError(404, f"no agent {name!r}; GET /v1/agents lists them")
        return served


@dataclass(frozen=True)
class Principal:
    """The caller: an API key, the --dev developer (key None, dev True) or an anonymous web-chat user (with
    ``session`` once the chat holds a session token)."""

    key: ApiKey | None
    client: str  # fairness and rate-limit bucket: the key id, else the client address
    dev: bool = False
    session: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.key is None and not self.dev

    @property
    def owner(self) -> str | None:
        """What objects this principal creates are stored as belonging to (None: --dev, like the CLI)."""
        if self.key is not None:
            return f"key:{self.key.id}"
        if self.session is not None:
            return f"anon:{self.session}"
        return None

    @property
    def admin(self) -> bool:
        """--dev, or a key with the admin scope: acts on every principal's objects."""
        return self.dev or (self.key is not None and self.key.scope == "admin")

    @property
    def owner_filter(self) -> str | None:
        """The ``owner=`` a store listing gets: None (anyone's) only for an admin."""
        if self.admin:
            return None
        if self.owner is None:
            raise ApiError(401, "start a chat session first: POST /chat/api/session")
        return self.owner

    @property
    def label(self) -> str:
        """Who decided an approval, as recorded."""
        return self.owner or "dev"

    def owns(self, owner: str | None) -> bool:
        return self.admin or (self.owner is not None and owner == self.owner)

    def allows(self, served: ServedAgent) -> bool:
        if self.dev:
            return True
        if self.key is not None:
            return self.key.allows(served.name)
        return served.web_chat == "public"


def get_state(request: Request) -> ServerState:
    return request.app.state.halguru


def _secret(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


def client_address(request: Request, trusted: list[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last address in
    X-Forwarded-For that is not one (the first would be whatever the client wrote)."""
    peer = request.client.host if request.client else "unknown"
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return peer


def _trusted(address: str, trusted: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in trusted)


def _principal(request: Request, optional: bool) -> Principal:
    state = get_state(request)
    address = client_address(request, state.settings.trusted_proxies)
    if state.settings.dev:
        return Principal(None, address, dev=True)
    secret = _secret(request)
    if secret is None:
        if optional:
            token = request.headers.get("x-chat-session")
            session = verify_session(state.settings.session_secret or "", token) if token else None
            if token and session is None:
                raise ApiError(401, "invalid chat session; start a new one with POST /chat/api/session",
                               "invalid_session")
            return Principal(None, address, session=session)
        raise ApiError(401, "an API key is required: send 'Authorization: Bearer KEY' "
                            "(create one with `halguru keys create NAME`)",
                       headers={"WWW-Authenticate": "Bearer"})
    key = verify_key(state.store, secret)
    if key is None:
        raise ApiError(401, "invalid key: unknown, revoked or expired", headers={"WWW-Authenticate": "Bearer"})
    return Principal(key, f"key:{key.id}")


def require_key(request: Request) -> Principal:
    """Every /v1 route: an API key, unless the server runs with --dev."""
    return _principal(request, optional=False)


def chat_caller(request: Request) -> Principal:
    """The web chat: a key if one is sent, else anonymous (public agents only, rate-limited, objects owned by
    the session token the chat holds)."""
    return _principal(request, optional=True)


def agent_for(state: ServerState, principal: Principal, name: str) -> ServedAgent:
    served = state.agent(name)
    if not principal.allows(served):
        if principal.anonymous:
            raise ApiError(401, f"agent {name!r} needs an API key for its web chat",
                           headers={"WWW-Authenticate": "Bearer"})
        raise ApiError(403, f"this API key may not use agent {name!r}")
    return served
