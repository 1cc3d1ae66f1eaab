"""Serve-mode settings: command-line options over ``HALGURU_SERVE_*`` variables over a YAML config file."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from halguru.errors import HalguruError
from halguru.yamlfile import parse_yaml
from halguru_server.identity.settings import AuthSettings

if TYPE_CHECKING:
    from halguru.jobs.worker import WorkerSettings

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class PushSettings(BaseModel):
    """The serve config's ``push:`` section: the web chat's notifications (``halguru_server.push``)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(default=True, description="offer notifications in the web chat")
    vapid_subject: str | None = Field(default=None, description="how push services reach this server's "
                                      "operator (mailto: or https:); default: auth.public_url, else "
                                      "mailto:admin@localhost (Apple's push service refuses that one)")
    allow_insecure_endpoints: bool = Field(default=False, description="accept http:// endpoints and private "
                                           "or loopback addresses (tests, a push server on a LAN)")
    ttl: int = Field(default=86400, ge=0, le=28 * 86400, description="seconds a push service keeps a "
                     "notification for a browser that is offline")
    max_per_user: int = Field(default=20, ge=1, le=1000, description="browsers one user may subscribe (the "
                              "oldest is dropped)")

    @field_validator("vapid_subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(mailto:[^@\s]+@[^@\s]+|https://\S+)", value):
            raise ValueError("use mailto:ADDRESS or an https:// URL")
        return value


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HALGURU_SERVE_", extra="forbid")

    agents: list[Path] = Field(default_factory=list, description="agent projects, or folders holding them")
    published_only: bool = Field(default=False, description="serve no agent folders: only the agents published "
                                 "to this server (`halguru publish`), a hosting server")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    dev: bool = Field(default=False, description="no API keys; loopback only")
    web_chat: Literal["public", "key"] = Field(
        default="key", description="web chat access of agents that do not set metadata.web_chat")
    public_rate_per_minute: int = Field(default=20, ge=1, description="messages per client IP on public chats")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses or networks of reverse proxies whose X-Forwarded-For "
                                          "names the client (rate limits); nobody else's is believed")
    session_secret: str | None = Field(default=None, repr=False, description="signs anonymous web-chat "
                                       "sessions; if unset, one made once and kept in the store (so every "
                                       "replica of a database, and each restart, signs alike)")
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_json_items: int = Field(default=50_000, ge=100, description="most commas and opening brackets (those in "
                                "strings too) a JSON body may hold, 413 beyond, before it is parsed: a parsed "
                                "item costs 30-80 bytes of memory for 2-5 of the body")
    max_bundle_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, description="largest agent bundle "
                                  "`halguru publish` may upload (POST /v1/deployments)")
    deployments_poll: float = Field(default=2.0, gt=0, description="seconds between looks at the store for a "
                                    "version another replica published or rolled back")
    deployments_keep: int = Field(default=20, ge=0, description="published versions kept per agent, newest "
                                  "first; older ones (bundle and unpacked folder) are deleted at the next publish, "
                                  "except the active one and any a paused run waits on; 0: keep every version")
    max_input_chars: int = Field(default=16_000, ge=1, description="longest message accepted")
    embedders: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]] = Field(
        default_factory=list, description="embedders (by name, such as minilm, wordllama or e5) offered on the "
                                          "OpenAI-compatible POST /v1/embeddings as models; default none")
    max_messages: int = Field(default=200, ge=1, description="most messages in one OpenAI-style request")
    max_history_chars: int = Field(default=200_000, ge=1,
                                   description="most characters in all the messages of an OpenAI-style request")
    max_public_conversation_chars: int = Field(default=500_000, ge=1, description="most characters an anonymous "
                                               "web-chat visitor's conversation holds (messages, answers and "
                                               "attachments); past it 409 conversation_full: start a new one")
    max_conversation_chars: int = Field(default=10_000_000, ge=0, description="most characters any other "
                                        "conversation holds (an API key's, a signed-in user's, a channel's, a "
                                        "job's: messages, answers and attachments); past it 409 conversation_full "
                                        "(a channel's sender gets a new conversation); 0: no cap")
    queue_size: int = Field(default=16, ge=1, description="runs waiting per model before 503")
    client_queue_share: float = Field(default=0.5, gt=0, le=1, description="the part of a model's queue one "
                                      "client (an API key, a web-chat visitor) may fill, so others still find "
                                      "room; 1: no cap")
    concurrency: int = Field(default=8, ge=1, description="parallel runs per model that can batch (not llama.cpp)")
    header_timeout: float = Field(default=10.0, gt=0, description="seconds a connection has, from connecting "
                                  "or from its next request's first byte, to send a whole request line and "
                                  "headers (then 408 and closed), and again, plus a second per 16 KiB, for the body")
    send_timeout: float = Field(default=60.0, gt=0, description="seconds an answer may go without its client "
                                "reading any of it (the kernel's buffers full) before the connection is aborted")
    keep_alive_timeout: int = Field(default=75, ge=1, description="seconds an idle connection is kept between "
                                    "requests (sent as Keep-Alive: timeout=N); longer than clients' pool expiry "
                                    "(httpx 5, aiohttp 15) and a load balancer's idle timeout, or a request sent "
                                    "as the server closes fails")
    max_idle_connections: int | None = Field(default=None, ge=1, description="connections that are idle or owe "
                                             "a request's head or body, per process, before the one waiting "
                                             "longest is closed (default half the open-file limit)")
    shutdown_timeout: float = Field(default=30.0, ge=0, description="seconds in-flight answers get on SIGTERM")
    drain_delay: float = Field(default=0.0, ge=0, description="seconds after SIGTERM that the server keeps "
                               "serving while /readyz says not ready (a load balancer's time to notice)")
    sse_keepalive: float = Field(default=10.0, gt=0, description="seconds of silence after which a stream "
                                 "gets a keep-alive comment (long tool calls, queue waits)")
    sse_coalesce: float = Field(default=0.05, ge=0, le=1, description="seconds: a stream's tokens that come "
                                "sooner than this after the last one it sent go out together, as one event "
                                "(one write per stream per 50 ms instead of one per token; 0: each at once)")
    max_followers: int = Field(default=10, ge=1, description="run streams one client (a person with all their "
                               "keys, an app's key, an anonymous visitor's address) may follow at once through GET "
                               ".../runs/ID/events, per process (each polls the store); past it 429")
    max_in_flight: int = Field(default=16, ge=0, description="requests one client (a person with all their "
                               "keys and browsers, an app's key, an anonymous visitor's address) may have in "
                               "flight at once, across replicas (each shares its counts through the store "
                               "every second), on routes that need a key, a session or a chat "
                               "session; past it 429 too_many_in_flight. Not counted: health, metrics and sign-in "
                               "pages, revoking a key or a session, disabling a user, an SSE stream once started, "
                               "--dev; 0: no cap")
    max_waiting_jobs: int = Field(default=1000, ge=1, description="jobs one owner (an API key's user or the key, "
                                  "a channel) may have queued at once through POST /v1/jobs; past it 429")
    max_conversations: int = Field(default=0, ge=0, description="conversations one owner (a person with all "
                                   "their keys, an app's key, a web-chat session) may keep, across replicas; "
                                   "starting one more (POST /v1/conversations, the web chat, an OpenAI-style "
                                   "chat that continues none) is a 409 too_many_conversations until some are "
                                   "deleted; 0: no cap")
    keep_mcp_servers: bool = Field(default=True, description="start agents' MCP servers once and keep them "
                                   "running between requests (off: each run starts and stops its own)")
    worker: bool = Field(default=True, description="run the worker (jobs, schedules, channel replies) in the "
                         "serve process; off (--no-worker) when `halguru worker` processes do it")
    worker_concurrency: int = Field(default=2, ge=1, description="jobs a worker runs at once")
    job_lease: float = Field(default=30.0, ge=1, description="seconds a worker's claim on a job lasts without "
                             "renewal: a job whose worker died is retried this long after")
    job_poll: float = Field(default=0.5, gt=0, description="longest idle wait of a worker (a job queued by "
                            "another process starts within it)")
    job_backoff: float = Field(default=2.0, gt=0, description="seconds before a failed job's first retry "
                               "(doubling each time, at most 5 minutes)")
    job_delivery_backoff: float = Field(default=30.0, gt=0, description="seconds before a reply that its channel "
                                        "could not deliver (the provider or mail server down), or a run whose "
                                        "model failed, is tried again (doubling each time, at most an hour; 8 "
                                        "tries span about an hour)")
    replica_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,100}$", description="this "
                                   "replica's name in the X-Halguru-Replica header and halguru_replica cookie "
                                   "(affinity for a load balancer); default HOSTNAME:PORT")
    cors_origins: list[str] = Field(default_factory=list, description="web pages (their origins, "
                                    "scheme://host[:port], or \"*\") whose scripts may call the API from a browser "
                                    "with a key; default none")
    log_level: Annotated[Literal["debug", "info", "warning", "error", "critical"],
                         BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)] = "info"
    auth: AuthSettings = Field(default_factory=AuthSettings, description="sign-in, sessions, roles' 2FA, "
                               "OIDC providers, SMTP for mail links, auth proxy (docs/identity.md)")
    push: PushSettings = Field(default_factory=PushSettings, description="the web chat's notifications "
                               "(Web Push): VAPID subject, endpoints allowed")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        # A browser sends its page's origin exactly so: "http://host:3000/" or a path would never match
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s:]+(:\d{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin: write scheme://host[:port], without a path or "
                                 "trailing /, or \"*\" for any")
        return value

    def worker_settings(self) -> WorkerSettings:
        from halguru.jobs.worker import WorkerSettings

        return WorkerSettings(concurrency=self.worker_concurrency, lease=self.job_lease, poll=self.job_poll,
                              backoff=self.job_backoff, delivery_backoff=self.job_delivery_backoff,
                              shutdown_timeout=self.shutdown_timeout,
                              max_input_chars=self.max_input_chars,
                              max_conversation_chars=self.max_conversation_chars)

    def check(self) -> None:
        """Refuse unsafe combinations before anything listens (an unset session secret is the store's: see
        ``sessions.stored_secret``)."""
        if self.dev and self.host not in LOOPBACK:
            raise HalguruError(f"--dev turns API keys off, so it only listens on loopback, not {self.host}; "
                               "drop --dev and create a key with `halguru keys create NAME`")
        for net in self.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise HalguruError(f"invalid serve setting trusted_proxies: {net!r} is not an address or "
                                   "network (e.g. 10.0.0.5 or 10.0.0.0/8)") from None
        if not self.replica_id:
            self.replica_id = f"{re.sub(r'[^A-Za-z0-9._-]', '-', socket.gethostname())[:80]}:{self.port}"


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _expand(value: Any, path: Path, where: str) -> Any:
    """``${NAME}`` (a whole value) is the environment variable NAME: secrets such as an OIDC client secret or
    the SMTP password stay out of the file (a Kubernetes Secret or a compose env_file supplies them)."""
    if isinstance(value, dict):
        return {k: _expand(v, path, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, path, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and (match := _ENV_REF.match(value.strip())):
        name = match.group(1)
        if name not in os.environ:
            raise HalguruError(f"{path}: {where} is ${{{name}}}, but the environment variable {name} is not set")
        return os.environ[name]
    return value


def load_settings(config: Path | None = None, **overrides: Any) -> ServerSettings:
    """Merge a YAML config file (``--config`` or HALGURU_SERVE_CONFIG), the environment and CLI overrides."""
    path = config or (Path(os.environ["HALGURU_SERVE_CONFIG"]) if os.environ.get("HALGURU_SERVE_CONFIG") else None)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise HalguruError(f"cannot read the serve config {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise HalguruError(f"cannot read the serve config {path}: not UTF-8 text") from None
        data = parse_yaml(text, path, HalguruError) or {}
        if not isinstance(data, dict):
            raise HalguruError(f"{path}: the serve config must be a YAML mapping")
        data = _expand(data, path, "")
    try:
        env = ServerSettings()  # environment only
    except ValidationError as exc:  # named as the variable that is wrong: HALGURU_SERVE_SHUTDOWN_TIMEOUT
        raise _one_line(exc, lambda where: f"HALGURU_SERVE_{where.upper()}") from None
    except SettingsError as exc:  # a list or mapping variable that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"HALGURU_SERVE_{field.group(1).upper()}" if field else "HALGURU_SERVE_*"
        raise HalguruError(f"invalid serve setting {name}: not valid JSON (a list is written "
                           '\'["a", "b"]\')') from None
    _warn_unknown_variables()
    merged = {**data, **env.model_dump(exclude_unset=True), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return ServerSettings.model_validate(merged)
    except ValidationError as exc:
        raise _one_line(exc, lambda where: where) from None


_NOT_SETTINGS = ("HALGURU_SERVE_CONFIG", "HALGURU_SERVE_SETTINGS_JSON")  # read by name, not settings


def _warn_unknown_variables() -> None:
    """A HALGURU_SERVE_ variable that names no setting is said once, with the one meant: pydantic-settings
    ignores it, so `HALGURU_SERVE_PROT=9000` served on 8000 without a word (a YAML key like it is an error)."""
    import difflib
    import sys

    known = [f"HALGURU_SERVE_{name.upper()}" for name in ServerSettings.model_fields]
    for variable in sorted(os.environ):
        if variable.endswith("_FILE") and variable.removesuffix("_FILE") in known:
            continue  # the secret's file (halguru.config.load_secret_files)
        if variable.startswith("HALGURU_SERVE_") and variable not in known and variable not in _NOT_SETTINGS:
            close = difflib.get_close_matches(variable, known, n=1)
            meant = f" (did you mean {close[0]}?)" if close else ""
            print(f"halguru: warning: {variable} is not a serve setting{meant}; it is ignored", file=sys.stderr)


def _one_line(exc: ValidationError, name: Callable[[str], str]) -> HalguruError:
    """The first error of ``exc`` as one line naming the setting (``name`` spells it as the user wrote it)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":  # a typo (`prot: 8001`): say so, with the setting meant
        import difflib

        known = list(ServerSettings.model_fields) if len(first["loc"]) == 1 else []
        close = difflib.get_close_matches(str(first["loc"][0]), known, n=1)
        message = "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")
    return HalguruError(f"invalid serve setting {name(where)}: {message}")
