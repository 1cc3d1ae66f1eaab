"""What one app holds (settings, agents, store, gate, metrics) and who is calling (API key or anonymous)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from fastapi import Request

from halguru.store.base import Store
from halguru_server.agents import ServedAgent
from halguru_server.errors import ApiError
from halguru_server.gate import ModelGate
from halguru_server.keys import ApiKey, verify_key
from halguru_server.metrics import Metrics
from halguru_server.settings import ServerSettings


class RateLimiter:
    """Sliding one-minute window per client, for anonymous (public) web chat."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def check(self, client: str) -> None:
        now = time.monotonic()
        hits = self.hits[client]
        while hits and hits[0] < now - 60:
            hits.popleft()
        if len(hits) >= self.per_minute:
            retry = int(hits[0] + 60 - now) + 1
            raise ApiError(429, f"too many messages: {self.per_minute} a minute per client; retry in {retry} s",
                           headers={"Retry-After": str(retry)})
        hits.append(now)


@dataclass
class ServerState:
    settings: ServerSettings
    agents: dict[str, ServedAgent]
    store: Store
    metrics: Metrics
    gate: ModelGate
    limiter: RateLimiter
    started: float = field(default_factory=time.time)
    draining: bool = False

    def agent(self, name: str) -> ServedAgent:
        served = self.agents.get(name)
        if served is None:
            raise ApiError(404, f"no agent {name!r}; GET /v1/agents lists them")
        return served


@dataclass(frozen=True)
class Principal:
    """The caller: an API key, the --dev developer (key None, dev True) or an anonymous web-chat user."""

    key: ApiKey | None
    client: str  # fairness and rate-limit bucket: the key id, else the client address
    dev: bool = False

    @property
    def anonymous(self) -> bool:
        return self.key is None and not self.dev

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


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _principal(request: Request, optional: bool) -> Principal:
    state = get_state(request)
    if state.settings.dev:
        return Principal(None, _address(request), dev=True)
    secret = _secret(request)
    if secret is None:
        if optional:
            return Principal(None, _address(request))
        raise ApiError(401, "an API key is required: send 'Authorization: Bearer KEY' "
                            "(create one with `halguru keys create NAME`)",
                       headers={"WWW-Authenticate": "Bearer"})
    key = verify_key(state.store, secret)
    if key is None:
        raise ApiError(401, "invalid, revoked or expired API key", headers={"WWW-Authenticate": "Bearer"})
    return Principal(key, f"key:{key.id}")


def require_key(request: Request) -> Principal:
    """Every /v1 route: an API key, unless the server runs with --dev."""
    return _principal(request, optional=False)


def chat_caller(request: Request) -> Principal:
    """The web chat: a key if one is sent, else anonymous (allowed on public agents only, rate-limited)."""
    return _principal(request, optional=True)


def agent_for(state: ServerState, principal: Principal, name: str) -> ServedAgent:
    served = state.agent(name)
    if not principal.allows(served):
        if principal.anonymous:
            raise ApiError(401, f"agent {name!r} needs an API key for its web chat",
                           headers={"WWW-Authenticate": "Bearer"})
        raise ApiError(403, f"this API key may not use agent {name!r}")
    return served
