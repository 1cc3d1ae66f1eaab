"""Object-level authorization: every route that takes a conversation or run id, for each kind of caller.

Key A owns the objects. Key B (another principal) gets 404 on every one of them, exactly as for an id that
does not exist, and changes nothing; A itself and an admin-scope key C act on them. The web chat's anonymous
sessions are principals too: a session sees only its own conversations, never a key's, nor another
session's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from halguru.store import open_store
from tests.server.test_runs_api import FLOW, FLOW_TOOLS, MAILER_TOOLS, pause, script, write_project

# (method, path, body): every /v1 route with a conversation, run or job id; the deleting one last.
ROUTES = [
    ("GET", "/v1/conversations/{conv}", None),
    ("GET", "/v1/conversations/{conv}/messages", None),
    ("POST", "/v1/conversations/{conv}/messages", {"content": "hello"}),
    ("GET", "/v1/runs/{run}", None),
    ("POST", "/v1/runs/{approve}/approve", {}),
    ("POST", "/v1/runs/{reject}/reject", {"reason": "not now"}),
    ("POST", "/v1/runs/{failed}/resume", {}),
    ("GET", "/v1/jobs/{job}", None),
    ("POST", "/v1/jobs/{job}/cancel", None),
    ("POST", "/v1/jobs/{cancelled}/retry", None),
    ("DELETE", "/v1/conversations/{conv}", None),
]


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    """`mailer` (send_email waits for approval), `flow` (a workflow that fails while BROKEN exists) and
    `echo` (a public web chat)."""
    root = tmp_path / "agents"
    mailer_script = tmp_path / "mailer.yaml"
    write_project(root / "mailer", {"name": "mailer", "model": f"scripted:{mailer_script}",
                                    "tools": ["send_email"], "approvals": ["send_email"]}, MAILER_TOOLS)
    write_project(root / "flow", FLOW, FLOW_TOOLS)
    (root / "echo").mkdir()
    (root / "echo" / "agent.yaml").write_text(yaml.safe_dump({
        "name": "echo", "model": "scripted", "instructions": "Echo.", "metadata": {"web_chat": "public"}}))
    return root


@pytest.fixture
def callers(serve: Callable[..., Any], api_key: Callable[..., str]) -> Iterator[dict[str, httpx.Client]]:
    server = serve()
    clients = {}
    for name, scope in (("A", "developer"), ("B", "developer"), ("C", "admin")):  # keys with roles of their own
        secret = api_key(name, scope=scope)
        clients[name] = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {secret}"})
        clients[name].key_id = secret.split("_")[1]  # type: ignore[attr-defined]
    clients["anon"] = httpx.Client(base_url=server.url, timeout=30)
    yield clients
    for client in clients.values():
        client.close()


def objects(owner: httpx.Client, agents_dir: Path) -> dict[str, str]:
    """A conversation with a message, two runs paused for approval and a failed workflow run, all owner's."""
    conv = owner.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    run = owner.post(f"/v1/conversations/{conv}/messages", json={"content": "hi"}).json()["run_id"]
    _, approve = pause(owner, agents_dir, "ann@example.com")
    _, reject = pause(owner, agents_dir, "bob@example.com")
    (agents_dir / "flow" / "BROKEN").touch()
    flow_conv = owner.post("/v1/conversations", json={"agent": "flow"}).json()["id"]
    failed = owner.post(f"/v1/conversations/{flow_conv}/messages", json={"content": "A-1"}).json()
    assert failed["status"] == "failed", failed
    (agents_dir / "flow" / "BROKEN").unlink()
    script(agents_dir, "Done.")  # what the mailer answers once a decision continues it
    job = owner.post("/v1/jobs", json={"agent": "echo", "input": "later", "delay": 3600}).json()["id"]
    cancelled = owner.post("/v1/jobs", json={"agent": "echo", "input": "never", "delay": 3600}).json()["id"]
    assert owner.post(f"/v1/jobs/{cancelled}/cancel").json()["status"] == "cancelled"
    return {"conv": conv, "run": run, "approve": approve, "reject": reject, "failed": failed["run_id"], "job": job,
            "cancelled": cancelled}


def call(client: httpx.Client, method: str, path: str, body: Any, ids: dict[str, str]) -> httpx.Response:
    return client.request(method, path.format(**ids), json=body)


def listed(client: httpx.Client, ids: dict[str, str]) -> set[str]:
    """Which of ``ids`` the client's listings show."""
    convs = {c["id"] for c in client.get("/v1/conversations", params={"limit": 100}).json()["data"]}
    runs = {r["id"] for r in client.get("/v1/runs", params={"limit": 100}).json()["data"]}
    pending = {p["run_id"] for p in client.get("/v1/runs/pending").json()["data"]}
    jobs = {j["id"] for j in client.get("/v1/jobs", params={"limit": 100}).json()["data"]}
    return (convs | runs | pending | jobs) & set(ids.values())


def test_another_key_gets_404_on_every_route_and_changes_nothing(callers, agents_dir: Path) -> None:
    a, b = callers["A"], callers["B"]
    ids = objects(a, agents_dir)
    for method, path, body in ROUTES:
        response = call(b, method, path, body, ids)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
        unknown = call(b, method, path, body, dict.fromkeys(ids, "run_0123456789abcdef"))
        assert response.json()["error"]["type"] == unknown.json()["error"]["type"] == "not_found"
    assert listed(b, ids) == set()
    # nothing happened to A's objects
    assert len(a.get(f"/v1/conversations/{ids['conv']}/messages").json()["data"]) == 2
    assert {p["run_id"] for p in a.get("/v1/runs/pending").json()["data"]} == {ids["approve"], ids["reject"]}
    assert not (agents_dir / "mailer" / "sent.log").exists()
    assert a.get(f"/v1/runs/{ids['failed']}").json()["status"] == "failed"


@pytest.mark.parametrize("who", ["A", "C"])
def test_the_owner_and_an_admin_key_act_on_every_route(callers, agents_dir: Path, who: str) -> None:
    a, actor = callers["A"], callers[who]
    ids = objects(a, agents_dir)
    assert listed(actor, ids) == set(ids.values())
    for method, path, body in ROUTES:
        response = call(actor, method, path, body, ids)
        assert response.status_code in (200, 201, 204), f"{method} {path}: {response.text}"
    store = open_store()
    approved, rejected = store.find_approval(ids["approve"]), store.find_approval(ids["reject"])
    assert approved is not None and rejected is not None
    assert approved["decided_by"] == rejected["decided_by"] == f"key:{actor.key_id}"  # type: ignore[attr-defined]
    assert (approved["status"], rejected["status"]) == ("approved", "rejected")
    # continuations belong to the run's owner, whoever decided
    continued = a.get(f"/v1/runs/{approved['continued_by']}")
    assert continued.status_code == 200 and continued.json()["status"] == "ok"
    assert callers["B"].get(f"/v1/runs/{approved['continued_by']}").status_code == 404


def test_web_chat_sessions_own_their_conversations(callers, agents_dir: Path) -> None:
    anon, a, admin = callers["anon"], callers["A"], callers["C"]
    assert anon.post("/chat/api/conversations", json={"agent": "echo"}).status_code == 401  # no session yet
    tokens = [anon.post("/chat/api/session").json()["token"] for _ in range(2)]
    assert tokens[0] != tokens[1] and len(tokens[0]) > 40
    one, two = ({"X-Chat-Session": t} for t in tokens)
    conv = anon.post("/chat/api/conversations", json={"agent": "echo"}, headers=one).json()["id"]
    path = f"/chat/api/conversations/{conv}/messages"
    # a key-only agent and one that does not exist look the same from outside: its name cannot be guessed
    keyed, missing = (anon.post("/chat/api/conversations", json={"agent": name}, headers=one)
                      for name in ("private", "privat"))
    assert keyed.status_code == missing.status_code == 401
    assert keyed.json()["error"]["message"].replace("private", "privat") == missing.json()["error"]["message"]
    assert callers["A"].post("/v1/conversations", json={"agent": "privat"}).status_code == 404  # keys learn it
    sent = anon.post(path, json={"content": "hi"}, headers=one)
    assert sent.status_code == 200 and sent.json()["output"] == "You said: hi"
    assert len(anon.get(path, headers=one).json()["data"]) == 2
    for other in (two, {}, {"X-Chat-Session": tokens[0][:-4] + "0000"}):  # another session, none, forged
        for method, body in (("GET", None), ("POST", {"content": "hi"})):
            response = anon.request(method, path, json=body, headers=other)
            assert response.status_code in (401, 404), response.text
    for key in (a, callers["B"]):  # keys are other principals: the chat's and the API's routes alike
        assert key.get(path).status_code == 404
        assert key.get(f"/v1/conversations/{conv}").status_code == 404
    assert admin.get(f"/v1/conversations/{conv}/messages").status_code == 200
    # a key's conversation is not a session's
    keyed = a.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    assert anon.get(f"/chat/api/conversations/{keyed}/messages", headers=one).status_code == 404
    assert a.get(f"/chat/api/conversations/{keyed}/messages").status_code == 200
