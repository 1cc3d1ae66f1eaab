"""Web Push: the web chat tells its signed-in user that an answer came while they were elsewhere.

When an answer arrives that nobody of theirs was watching stream in (a queued job's run finished, an operator
answered in a taken-over conversation, someone else decided an approval of theirs), the conversation's owner
gets a notification on each browser that asked for them (``POST /chat/api/push/subscriptions``). The service
worker shows it unless a focused window of the app already shows that conversation.

- The VAPID key pair that signs every push (RFC 8292) is made on first need and kept in the store
  (``server_secrets``), so replicas sharing a database sign alike; its public key is what browsers subscribe
  with (``GET /chat/api/push/key``).
- The payload is encrypted for the browser (RFC 8291, aes128gcm) and says little: a title, the first
  120 characters of the answer, the conversation's address in the web chat.
- The server POSTs to addresses that browsers hand it: an endpoint must be https on a public host (checked
  when subscribing, and the address each connection reaches when sending; redirects are not followed), unless
  ``push.allow_insecure_endpoints`` (tests, a LAN) lets http and private addresses through.
- A subscription belongs to the signed-in browser session that made it: a push for a session that was signed
  out or expired deletes it instead (the page subscribes again after the next sign-in), as does a push
  service answering 404 or 410.
- Sending runs on a small thread pool, never in a request or on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from halguru.tools.netpin import is_private
from halguru_server.errors import ApiError
from halguru_server.settings import PushSettings

if TYPE_CHECKING:
    from py_vapid import Vapid01

    from halguru.store.base import Store
    from halguru.store.records import PushSubscriptionRecord

log = logging.getLogger("halguru.push")
VAPID_SECRET = "vapid_private_key"  # its name in the store's server_secrets (PEM, PKCS#8)
BODY_CHARS = 120
MAX_ENDPOINT = 2048
_LOCAL_NAMES = re.compile(r"(^|\.)(localhost|local|internal|localdomain|home\.arpa)\.?$", re.IGNORECASE)


class SubscriptionKeys(BaseModel):
    model_config = ConfigDict(extra="ignore")
    p256dh: str = Field(min_length=80, max_length=100, description="the browser's P-256 public key (base64url)")
    auth: str = Field(min_length=16, max_length=32, description="the browser's 16-byte auth secret (base64url)")


class SubscriptionIn(BaseModel):
    """What ``PushSubscription.toJSON()`` gives in the browser (``expirationTime`` is ignored)."""

    model_config = ConfigDict(extra="ignore")
    endpoint: str = Field(min_length=10, max_length=MAX_ENDPOINT)
    keys: SubscriptionKeys


class Unsubscribe(BaseModel):
    model_config = ConfigDict(extra="ignore")
    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT)


def _b64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _public_ip(address: str) -> bool:
    return not is_private(address)  # as the tools judge an address: also the IPv4 one an IPv6 one carries


def _literal_address(host: str) -> str | None:
    """The address a host name spells, if it is one: also the short IPv4 forms resolvers accept (``127.1``,
    ``0177.0.0.1``, ``0x7f.1``) that ``ipaddress`` does not."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def check_endpoint(endpoint: str, insecure: bool) -> str:
    """The endpoint if the server may POST to it: https, a host name or public address, no credentials."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise ApiError(422, "endpoint: not a URL") from None
    host = parts.hostname or ""
    if parts.scheme not in (("https", "http") if insecure else ("https",)):
        raise ApiError(422, "endpoint: a push service's address starts with https://")
    if not host or parts.username or parts.password or parts.fragment or any(c.isspace() for c in endpoint):
        raise ApiError(422, "endpoint: not a push service's address")
    if port == 0:
        raise ApiError(422, "endpoint: not a push service's address")
    if not insecure:
        literal = _literal_address(host)
        if (literal is not None and not _public_ip(literal)) or _LOCAL_NAMES.search(host) or "." not in host:
            raise ApiError(422, "endpoint: a push service on a private or local address is refused")
    return endpoint


def check_subscription(body: SubscriptionIn, insecure: bool) -> tuple[str, str, str]:
    """The endpoint and keys, checked: a real P-256 point and a 16-byte secret (else no push could be
    encrypted for it)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    endpoint = check_endpoint(body.endpoint, insecure)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64(body.keys.p256dh))
    except (ValueError, binascii.Error):
        raise ApiError(422, "keys.p256dh: not a P-256 public key (base64url, 65 bytes)") from None
    try:
        auth = _b64(body.keys.auth)
    except (ValueError, binascii.Error):
        auth = b""
    if len(auth) != 16:
        raise ApiError(422, "keys.auth: not a 16-byte secret (base64url)")
    return endpoint, body.keys.p256dh.rstrip("="), body.keys.auth.rstrip("=")


def shorten(text: str, limit: int = BODY_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


def chat_url(agent: str, conversation_id: str) -> str:
    """Where the web chat opens that conversation."""
    return f"/chat/?agent={quote(agent, safe='')}&conversation={quote(conversation_id, safe='')}"


Outcome = Literal["sent", "gone", "failed", "signed_out"]


class Pusher:
    """Sends notifications for one process (the API server, or `halguru worker`), off the event loop."""

    def __init__(self, store: Store, settings: PushSettings, public_url: str | None = None, threads: int = 2):
        self.store = store
        self.settings = settings
        public = public_url.rstrip("/") if public_url and public_url.startswith("https://") else None
        self.subject = settings.vapid_subject or public or "mailto:admin@localhost"
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="push")
        self._vapid: Vapid01 | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def vapid(self) -> Vapid01:
        """The server's VAPID key, made and stored the first time any replica needs it."""
        with self._lock:
            if self._vapid is None:
                from py_vapid import Vapid

                pem = self.store.server_secret(VAPID_SECRET, _new_pem)
                self._vapid = Vapid.from_pem(pem.encode())
            return self._vapid

    def public_key(self) -> str:
        """The applicationServerKey browsers subscribe with: the uncompressed P-256 point, base64url."""
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        key = self.vapid().public_key
        assert key is not None
        return b64url(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def notify(self, conversation_id: str, title: str, text: str, actor: str | None = None) -> Future[int] | None:
        """Queue a notification to the conversation's owner (a signed-in user; nobody else gets them), unless
        ``actor`` (who caused the answer) is that owner; the future's result is the pushes sent."""
        if not self.enabled:
            return None
        try:
            return self._pool.submit(self._notify, conversation_id, title, text, actor)
        except RuntimeError:  # shutting down
            return None

    def _notify(self, conversation_id: str, title: str, text: str, actor: str | None) -> int:
        try:
            row = self.store.get_conversation(conversation_id)
            owner = row["owner"] if row else None
            if row is None or not owner or not owner.startswith("user:") or owner == actor:
                return 0
            payload = {"title": title, "body": shorten(text), "url": chat_url(row["agent"], conversation_id),
                       "tag": conversation_id, "conversation": conversation_id, "agent": row["agent"]}
            user = self.store.get_user(owner[5:])
            if user is None or user["disabled"]:
                return 0
            return sum(self.send(sub, payload) == "sent" for sub in self.store.list_push_subscriptions(user["id"]))
        except Exception:
            log.exception("push notification failed", extra={"fields": {"conversation_id": conversation_id}})
            return 0

    def send(self, sub: PushSubscriptionRecord, payload: dict[str, Any]) -> Outcome:
        """One push to one browser, encrypted and VAPID-signed; the subscription is deleted when its session
        ended or its push service says it is gone."""
        endpoint = sub["endpoint"]
        if not self._session_live(sub):
            self.store.delete_push_subscription(endpoint)
            return "signed_out"
        from pywebpush import WebPushException, webpush

        info = {"endpoint": endpoint, "keys": {"p256dh": sub["p256dh"], "auth": sub["auth"]}}
        try:
            webpush(info, json.dumps(payload), vapid_private_key=self.vapid(),
                    vapid_claims={"sub": self.subject}, ttl=self.settings.ttl, timeout=10,
                    requests_session=_PushSession(not self.settings.allow_insecure_endpoints),
                    headers={"Urgency": "normal"})
        except WebPushException as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (404, 410):
                self.store.delete_push_subscription(endpoint)
                return "gone"
            log.warning("push refused", extra={"fields": {"host": urlsplit(endpoint).hostname, "status": status}})
            self.store.record_push(endpoint, False)
            return "failed"
        except Exception as exc:  # the push service is unreachable: the next push tries again
            log.warning("push failed", extra={"fields": {"host": urlsplit(endpoint).hostname,
                                                         "error": type(exc).__name__}})
            self.store.record_push(endpoint, False)
            return "failed"
        self.store.record_push(endpoint, True)
        return "sent"

    def _session_live(self, sub: PushSubscriptionRecord) -> bool:
        session = self.store.get_web_session(sub["session"]) if sub["session"] else None
        return (session is not None and session["revoked"] is None and session["expires"] > time.time()
                and session["user_id"] == sub["user_id"])

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _new_pem() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


class _PublicOnly:
    """A connection that refuses a peer that is not a public address, checked on the connected socket itself:
    a name pointed inside after the subscription was checked (or between a look-up and the connect) gets
    nothing. Through a proxy, the proxy makes the connection and this check is its own."""

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        peer = str(sock.getpeername()[0])
        if not _public_ip(peer):
            sock.close()
            raise NewConnectionError(self, f"refused: the push endpoint is at {peer}, "  # type: ignore[arg-type]
                                           "not a public address")
        return sock


class _PublicHTTPConnection(_PublicOnly, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicOnly, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class _PublicAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


class _PushSession(requests.Session):
    """How pushes go out: no redirects (a push service answers; it never sends the server elsewhere) and, unless
    ``push.allow_insecure_endpoints``, public peers only."""

    def __init__(self, public_only: bool):
        super().__init__()
        if public_only:
            self.mount("https://", _PublicAdapter())
            self.mount("http://", _PublicAdapter())

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["allow_redirects"] = False
        return super().request(*args, **kwargs)
