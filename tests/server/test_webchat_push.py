"""The web chat's notifications over real Web Push: a push-service stand-in on loopback receives what the
server sends through pywebpush, and the test checks it as a push service and a browser would: the VAPID JWT
(ES256, against the key the server serves; aud, exp, sub) and the aes128gcm payload, decrypted with the
browser's own private key and auth secret. A 410 deletes the subscription; a signed-out browser's is deleted
instead of pushed to. End to end: an operator's answer, a queued job's and an approval decided by someone else
each push exactly once to the conversation's owner, and never to another user."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.server.conftest import Server
from tests.server.test_runs_api import MAILER_TOOLS, script, send, write_project

INSECURE = {"push": {"allow_insecure_endpoints": True}}


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Pushed:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class PushService:
    """A push service's stand-in: records each POST; answers 201, or ``status[path]``."""

    url: str = ""
    received: list[Pushed] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    seen: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, count: int, timeout: float = 15) -> list[Pushed]:
        with self.seen:
            assert self.seen.wait_for(lambda: len(self.received) >= count, timeout), \
                f"{len(self.received)} pushes, expected {count}"
        return list(self.received)


@pytest.fixture
def push_service() -> Iterator[PushService]:
    service = PushService()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with service.seen:
                service.received.append(Pushed(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                service.seen.notify_all()
            self.send_response(service.status.get(self.path, 201))
            self.send_header("location", "/push/elsewhere")  # read only with a 3xx
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    service.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield service
    httpd.shutdown()


class Browser:
    """What a browser holds for one subscription: its P-256 key pair and auth secret."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def subscription(self) -> dict[str, Any]:
        raw = self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None, "keys": {"p256dh": b64(raw), "auth": b64(self.auth)}}

    def decrypt(self, pushed: Pushed) -> dict[str, Any]:
        assert pushed.headers["content-encoding"] == "aes128gcm"
        return json.loads(http_ece.decrypt(pushed.body, private_key=self.key, auth_secret=self.auth,
                                           version="aes128gcm"))


def signed_in(server: Server, email: str, role: str = "user") -> tuple[str, httpx.Client]:
    """A user and their browser's HTTP client (session cookie, CSRF token, this origin)."""
    from halguru_server.identity import accounts, websessions

    user = accounts.create_user(server.state.store, email, role=role, name=email.split("@")[0])["id"]
    secret, record = websessions.issue(server.state.store, user, server.state.settings.auth)
    client = httpx.Client(base_url=server.url, timeout=30, cookies={websessions.COOKIE: secret},
                          headers={"X-CSRF-Token": record["csrf"],
                                   "Origin": server.state.settings.auth.public_url or server.url})
    return user, client


def verify_vapid(pushed: Pushed, public_key: str, audience: str) -> dict[str, Any]:
    """The push service's check: ``vapid t=JWT, k=KEY``, the JWT signed with ES256 by that key."""
    from joserfc import jwt
    from joserfc.jwk import ECKey

    scheme, _, params = pushed.headers["authorization"].partition(" ")
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert scheme == "vapid" and fields["k"] == public_key
    raw = unb64(public_key)
    assert len(raw) == 65 and raw[0] == 4
    key = ECKey.import_key({"kty": "EC", "crv": "P-256", "x": b64(raw[1:33]), "y": b64(raw[33:])})
    token = jwt.decode(fields["t"], key, algorithms=["ES256"])
    assert token.header["alg"] == "ES256"
    claims = token.claims
    assert claims["aud"] == audience
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    return claims


def subscribe(client: httpx.Client, browser: Browser) -> None:
    response = client.post("/chat/api/push/subscriptions", json=browser.subscription())
    assert response.status_code == 201, response.text


def new_chat(client: httpx.Client, agent: str = "echo", text: str = "hello") -> str:
    conv = client.post("/chat/api/conversations", json={"agent": agent}).json()["id"]
    answered = client.post(f"/chat/api/conversations/{conv}/messages", json={"content": text})
    assert answered.status_code == 200, answered.text
    return conv


def test_a_push_is_vapid_signed_and_encrypted_for_the_browser_and_410_unsubscribes(
        serve: Callable[..., Server], push_service: PushService) -> None:
    server = serve(worker=False, **INSECURE, auth={"public_url": "https://chat.example"})
    ann, client = signed_in(server, "ann@example.com")
    public_key = client.get("/chat/api/push/key").json()["public_key"]
    assert client.get("/chat/api/push/key").json()["public_key"] == public_key  # kept, not made anew
    assert server.state.store.server_secret("vapid_private_key", str).startswith("-----BEGIN PRIVATE KEY-----")
    browser = Browser(f"{push_service.url}/push/ann-1")
    subscribe(client, browser)
    conv = new_chat(client)
    answer = "The parcel ships today. " + "It takes the long way round. " * 10
    assert server.state.pusher.notify(conv, "echo answered", answer).result(15) == 1

    [pushed] = push_service.wait(1)
    assert pushed.path == "/push/ann-1"
    assert int(pushed.headers["ttl"]) == 86400 and pushed.headers["urgency"] == "normal"
    claims = verify_vapid(pushed, public_key, push_service.url)  # aud: the endpoint's origin
    assert claims["sub"] == "https://chat.example"  # the default subject: the server's public address
    message = browser.decrypt(pushed)
    assert message == {"title": "echo answered", "body": message["body"], "tag": conv, "conversation": conv,
                       "url": f"/chat/?agent=echo&conversation={conv}", "agent": "echo"}
    assert message["body"].startswith("The parcel ships today. It takes") and len(message["body"]) == 120
    assert message["body"].endswith("…")
    [stored] = server.state.store.list_push_subscriptions(ann)
    assert stored["last_success"] is not None and stored["failures"] == 0

    push_service.status["/push/ann-1"] = 307  # a push service never sends the server elsewhere
    assert server.state.pusher.notify(conv, "echo answered", "again").result(15) == 0
    assert [p.path for p in push_service.wait(2)] == ["/push/ann-1"] * 2  # not followed to /push/elsewhere
    [stored] = server.state.store.list_push_subscriptions(ann)
    assert stored["failures"] == 1 and stored["last_failure"] is not None

    push_service.status["/push/ann-1"] = 410  # the browser unsubscribed at its push service
    assert server.state.pusher.notify(conv, "echo answered", "again").result(15) == 0
    assert len(push_service.wait(3)) == 3
    assert server.state.store.list_push_subscriptions(ann) == []


def test_only_a_signed_in_browser_subscribes_and_hostile_input_is_refused(
        serve: Callable[..., Server], push_service: PushService) -> None:
    from halguru_server.keys import create_key

    strict = serve(worker=False)  # the default: https endpoints on public hosts only
    ann, client = signed_in(strict, "ann@example.com")
    good = Browser("https://push.example.com/send/abc").subscription()
    assert client.post("/chat/api/push/subscriptions", json=good).status_code == 201
    refused = {
        "http://push.example.com/x": "https://",
        "https://127.0.0.1/x": "private or local",
        "https://10.1.2.3/x": "private or local",
        "https://127.1/x": "private or local",  # short IPv4 forms that resolvers read as 127.0.0.1
        "https://0177.0.0.1/x": "private or local",
        "https://0x7f.1/x": "private or local",
        "https://10.1/x": "private or local",
        "https://[::1]/x": "private or local",
        "https://[::ffff:169.254.169.254]/latest": "private or local",
        "https://localhost:8443/x": "private or local",
        "https://metadata.google.internal/x": "private or local",
        "https://user:pw@push.example.com/x": "not a push service",
        "file:///etc/passwd": "https://",
        "https://push.example.com/" + "a" * 3000: "at most 2048",
    }
    for endpoint, why in refused.items():
        response = client.post("/chat/api/push/subscriptions", json={**good, "endpoint": endpoint})
        assert response.status_code == 422 and why in response.json()["error"]["message"], (endpoint, response.text)
    bad_keys = [{"p256dh": b64(b"\x04" + b"\x01" * 64), "auth": good["keys"]["auth"]},  # not on the curve
                {"p256dh": good["keys"]["p256dh"], "auth": b64(b"short")},
                {"p256dh": "!" * 87, "auth": good["keys"]["auth"]}]
    for keys in bad_keys:
        response = client.post("/chat/api/push/subscriptions", json={**good, "keys": keys})
        assert response.status_code == 422, response.text
        assert "\n" not in response.json()["error"]["message"]
    assert [s["endpoint"] for s in strict.state.store.list_push_subscriptions(ann)] == [good["endpoint"]]

    anonymous = httpx.post(f"{strict.url}/chat/api/push/subscriptions", json=good)
    assert anonymous.status_code == 401  # anonymous visitors get no push
    key = create_key(strict.state.store, "ann", scope="user", user_id=ann)[1]
    by_key = httpx.post(f"{strict.url}/chat/api/push/subscriptions", json=good,
                        headers={"Authorization": f"Bearer {key}"})
    assert by_key.status_code == 403 and "signed-in browser" in by_key.json()["error"]["message"]
    no_csrf = client.post("/chat/api/push/subscriptions", json=good, headers={"X-CSRF-Token": ""})
    assert no_csrf.status_code == 403 and no_csrf.json()["error"]["type"] == "csrf"
    cross_site = client.delete("/chat/api/push/subscriptions", params={"endpoint": good["endpoint"]},
                               headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403

    _, bobs = signed_in(strict, "bob@example.com")
    assert bobs.delete("/chat/api/push/subscriptions", params={"endpoint": good["endpoint"]}).status_code == 204
    assert len(strict.state.store.list_push_subscriptions(ann)) == 1  # not bob's to turn off
    assert client.delete("/chat/api/push/subscriptions", params={"endpoint": good["endpoint"]}).status_code == 204
    assert strict.state.store.list_push_subscriptions(ann) == []
    assert client.delete("/chat/api/push/subscriptions", params={"endpoint": good["endpoint"]}).status_code == 204

    # a stored endpoint whose name points inside by the time of the push is not posted to: the address each
    # connection reaches is checked (localhost and a loopback address stand for a name re-pointed in DNS)
    [record] = strict.state.store.list_web_sessions(ann)
    port = push_service.url.rsplit(":", 1)[1]
    for endpoint in (f"https://localhost:{port}/push/inside", f"http://127.0.0.1:{port}/push/inside"):
        strict.state.store.save_push_subscription(endpoint, ann, good["keys"]["p256dh"], good["keys"]["auth"],
                                                  record["id_hash"])
    conv = new_chat(client)
    assert strict.state.pusher.notify(conv, "t", "x").result(15) == 0
    assert push_service.received == []
    assert {s["failures"] for s in strict.state.store.list_push_subscriptions(ann)} == {1}

    off = serve(worker=False, push={"enabled": False})
    _, offs = signed_in(off, "cy@example.com")
    assert offs.get("/chat/api/push/key").status_code == 404
    assert offs.post("/chat/api/push/subscriptions", json=good).status_code == 404


def test_a_signed_out_browser_gets_no_push_and_its_subscription_goes(
        serve: Callable[..., Server], push_service: PushService) -> None:
    server = serve(worker=False, **INSECURE)
    ann, client = signed_in(server, "ann@example.com")
    subscribe(client, Browser(f"{push_service.url}/push/ann"))
    conv = new_chat(client)
    assert client.post("/auth/logout").status_code in (200, 204, 303)
    assert server.state.pusher.notify(conv, "echo answered", "hi").result(15) == 0
    assert push_service.received == [] and server.state.store.list_push_subscriptions(ann) == []


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """`echo` (the scripted model echoes) and `mailer` (send_email waits for approval; its script in mailer.yaml)."""
    root = tmp_path / "agents"
    (root / "echo").mkdir(parents=True)
    (root / "echo" / "agent.yaml").write_text("name: echo\nmodel: scripted\ninstructions: Echo.\n")
    (tmp_path / "mailer.yaml").write_text("[]\n")
    write_project(root / "mailer", {"name": "mailer", "model": f"scripted:{tmp_path / 'mailer.yaml'}",
                                    "tools": ["send_email"], "approvals": ["send_email"]}, MAILER_TOOLS)
    return root


def test_operator_answer_queued_job_and_approval_each_push_once_to_the_owner_only(
        serve: Callable[..., Server], push_service: PushService, agents_dir: Path) -> None:
    from halguru_server.keys import create_key

    server = serve(**INSECURE)  # with the worker: queued jobs run here
    store = server.state.store
    _, client = signed_in(server, "ann@example.com")
    bob, bobs = signed_in(server, "bob@example.com")
    annb, bobb = Browser(f"{push_service.url}/push/ann"), Browser(f"{push_service.url}/push/bob")
    subscribe(client, annb)
    subscribe(bobs, bobb)
    new_chat(bobs, text="bob's own chat")
    op, _ = signed_in(server, "op@example.com", role="operator")
    operator = httpx.Client(base_url=server.url, timeout=30, headers={
        "Authorization": f"Bearer {create_key(store, 'op', scope='admin', user_id=op)[1]}"})

    # 1. an operator takes ann's conversation over and answers
    conv = new_chat(client, text="I want a person")
    assert operator.post(f"/v1/conversations/{conv}/takeover").status_code == 200
    assert operator.post(f"/v1/conversations/{conv}/reply", json={"text": "Hi Ann, Olga here."}).status_code == 201
    [first] = push_service.wait(1)
    assert first.path == "/push/ann"
    said = annb.decrypt(first)
    assert (said["title"], said["body"], said["conversation"]) == ("echo: an operator answered", "Hi Ann, Olga here.",
                                                                   conv)
    assert operator.post(f"/v1/conversations/{conv}/handback").status_code == 200

    # 2. a job queued in that conversation (by the operator: the answer is ann's all the same) finishes in the worker
    job = operator.post("/v1/jobs", json={"agent": "echo", "input": "later, please", "conversation_id": conv}).json()
    second = push_service.wait(2)[1]
    assert second.path == "/push/ann"
    said = annb.decrypt(second)
    assert (said["title"], said["body"]) == ("echo answered", "You said: later, please")
    assert operator.get(f"/v1/jobs/{job['id']}").json()["status"] == "done"

    # 3. ann's tool call waits for approval; the operator approves it: the answer reaches ann
    script(agents_dir, send("ann@example.com"))
    mail = client.post("/chat/api/conversations", json={"agent": "mailer"}).json()["id"]
    paused = client.post(f"/chat/api/conversations/{mail}/messages", json={"content": "mail me"}).json()
    assert paused["status"] == "paused"
    script(agents_dir, "Mail sent to you.")
    approved = operator.post(f"/v1/runs/{paused['run_id']}/approve", json={})
    assert approved.status_code == 200 and approved.json()["output"] == "Mail sent to you."
    third = push_service.wait(3)[2]
    said = annb.decrypt(third)
    assert (third.path, said["title"], said["body"], said["conversation"]) == (
        "/push/ann", "mailer: the action was approved", "Mail sent to you.", mail)

    # ann's own answers (she watched them stream) and bob's chat pushed nothing; bob got nothing at all
    time.sleep(1)
    assert [p.path for p in push_service.received] == ["/push/ann"] * 3
    assert {s["endpoint"]: s["failures"] for s in store.list_push_subscriptions(bob)} == {bobb.endpoint: 0}


def test_a_stalled_decision_resumed_by_an_operator_pushes_its_answer_to_the_owner(
        serve: Callable[..., Server], push_service: PushService, agents_dir: Path, other_store) -> None:
    """Approve and reject push the continuation's answer to the conversation's owner; POST /v1/runs/ID/resume of
    a decision whose continuation stalled (its deciding process died) carried the same decision out silently."""
    from halguru_server.keys import create_key

    server = serve(**INSECURE)
    _, client = signed_in(server, "ann@example.com")
    annb = Browser(f"{push_service.url}/push/ann")
    subscribe(client, annb)
    op, _ = signed_in(server, "op@example.com", role="operator")
    operator = httpx.Client(base_url=server.url, timeout=30, headers={
        "Authorization": f"Bearer {create_key(server.state.store, 'op', scope='admin', user_id=op)[1]}"})
    script(agents_dir, send("ann@example.com"))
    mail = client.post("/chat/api/conversations", json={"agent": "mailer"}).json()["id"]
    paused = client.post(f"/chat/api/conversations/{mail}/messages", json={"content": "mail me"}).json()
    assert paused["status"] == "paused"
    script(agents_dir, "Mail sent to you.")
    dead = other_store(lease=0.1)  # the deciding process: it recorded the decision, then died
    assert dead.decide_approval(paused["run_id"], "approved", None)
    dead.close()
    time.sleep(0.3)  # its claim expires
    resumed = operator.post(f"/v1/runs/{paused['run_id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["output"] == "Mail sent to you.", resumed.text
    [pushed] = push_service.wait(1)
    said = annb.decrypt(pushed)
    assert (pushed.path, said["title"], said["body"], said["conversation"]) == (
        "/push/ann", "mailer: the action was approved", "Mail sent to you.", mail)


def test_a_push_connection_to_a_private_ipv4_address_inside_an_ipv6_one_is_refused() -> None:
    """The connected peer is checked (a name resolved to an address inside): NAT64 and 6to4 carry IPv4 ones."""
    from halguru_server.push import _public_ip

    assert not _public_ip("64:ff9b::a9fe:a9fe") and not _public_ip("2002:a00:5::1")  # metadata; 10.0.0.5
    assert _public_ip("64:ff9b::808:808") and _public_ip("2606:4700:4700::1111")
