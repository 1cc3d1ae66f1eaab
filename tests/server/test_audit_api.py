"""The audit log through serve's real routes: a failed and a good sign-in, a role change and a key creation
land in the log in order with the caller and address; /v1/audit filters and pages it; verify says intact;
one row edited with raw SQL is named by seq in /v1/audit/verify and by `halguru audit verify` (exit 1)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from halguru_server import ServerSettings, create_app
from halguru_server.identity import accounts
from halguru_server.identity.settings import AuthSettings

from halguru import audit

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(agents_dir: Path):
    settings = ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False,
                              auth=AuthSettings(require_2fa_roles=[]))
    app = create_app(settings)
    with TestClient(app):
        yield app


def _sign_in(client: TestClient, email: str, password: str) -> int:
    page = client.get("/auth/login")
    token = _CSRF.search(page.text)
    assert token, page.text
    fields = {"csrf_token": token.group(1), "email": email, "password": password, "next": "/"}
    return client.post("/auth/login", data=fields, follow_redirects=False).status_code


def _admin_browser(app) -> tuple[TestClient, dict, dict]:
    """An admin signed in through the sign-in page (after one wrong password), and a developer."""
    store = app.state.halguru.store
    root = accounts.create_user(store, "root@example.com", role="admin", password=PASSWORD, email_verified=True)
    ann = accounts.create_user(store, "ann@example.com", role="developer", password=PASSWORD, email_verified=True)
    client = TestClient(app, headers={"Origin": "http://testserver"})
    assert _sign_in(client, "Root@example.com", "wrong password!") == 401
    assert _sign_in(client, "root@example.com", PASSWORD) == 303
    client.headers["X-CSRF-Token"] = client.get("/auth/me").json()["csrf"]
    return client, dict(root), dict(ann)


def test_privileged_actions_through_the_routes_are_logged_in_order_and_verify(app) -> None:
    client, root, ann = _admin_browser(app)
    assert client.patch(f"/v1/users/{ann['id']}", json={"role": "operator"}).status_code == 200
    key = client.post("/v1/keys", json={"name": "ci"}).json()
    entries = client.get("/v1/audit").json()["data"]
    assert [(e["action"], e["actor"], e["target"]) for e in reversed(entries)] == [
        ("auth.sign_in_failed", "anon:testclient", "root@example.com"),
        ("auth.sign_in", f"user:{root['id']}", root["id"]),
        ("user.role", f"user:{root['id']}", ann["id"]),
        ("key.create", f"user:{root['id']}", key["id"])]
    assert entries[1]["details"] == {"role": "operator"} and entries[1]["address"] == "testclient"
    assert entries[0]["details"] == {"name": "ci", "scope": "user", "user_id": root["id"]}
    assert [e["seq"] for e in entries] == [4, 3, 2, 1]
    first = client.get("/v1/audit", params={"limit": 3}).json()
    assert [e["seq"] for e in first["data"]] == [4, 3, 2] and first["next"] == 2
    rest = client.get("/v1/audit", params={"limit": 3, "before": first["next"]}).json()
    assert [e["seq"] for e in rest["data"]] == [1] and rest["next"] is None
    assert [e["seq"] for e in client.get("/v1/audit", params={"action": "auth."}).json()["data"]] == [2, 1]
    assert [e["seq"] for e in client.get("/v1/audit", params={"actor": "anon:testclient"}).json()["data"]] == [1]
    verified = client.post("/v1/audit/verify").json()
    assert verified["ok"] and verified["entries"] == 4 and verified["message"].startswith("audit chain intact: 4")


def test_audit_needs_audit_read(app) -> None:
    client, _, ann = _admin_browser(app)
    developer = TestClient(app, headers={"Origin": "http://testserver"})
    assert _sign_in(developer, ann["email"], PASSWORD) == 303
    developer.headers["X-CSRF-Token"] = developer.get("/auth/me").json()["csrf"]
    assert developer.get("/v1/audit").status_code == 403
    assert developer.post("/v1/audit/verify").status_code == 403
    assert TestClient(app).get("/v1/audit").status_code == 401
    assert client.post("/auth/logout-all").status_code == 200
    assert client.get("/v1/audit").status_code == 401  # signed out: the cookie's session has ended
    [out] = app.state.halguru.store.list_audit(action="auth.sign_out")
    assert out["details"] == {"everywhere": True, "revoked": 1}


def test_a_tampered_row_is_named_by_the_api_and_the_cli(app, cli, home_sql) -> None:
    client, _, ann = _admin_browser(app)
    client.patch(f"/v1/users/{ann['id']}", json={"role": "operator"})
    client.post("/v1/keys", json={"name": "ci"})
    assert "audit chain intact: 4 entries" in cli("audit", "verify").output
    listed = cli("audit", "list", "--action", "user.role").output
    assert "user.role" in listed and ann["id"] in listed and "auth.sign_in" not in listed
    home_sql("UPDATE audit SET details = ? WHERE action = 'user.role'", ['{"role":"admin"}'])  # ann an admin after all
    broken = client.post("/v1/audit/verify").json()
    assert not broken["ok"] and broken["seq"] == 3 and broken["entries"] == 2
    assert broken["reason"].startswith("hash mismatch")
    out = cli("audit", "verify", code=1).output
    assert "audit chain broken at entry 3: hash mismatch" in out


def test_cli_actions_are_logged_as_the_os_user(app, cli, cli_error) -> None:
    store = app.state.halguru.store
    job, _ = store.enqueue_job("run", "echo", {"input": "hi"})
    cli("jobs", "cancel", job["id"])
    cli("users", "create", "bob@example.com", "--role", "operator", "--no-password")
    actions = [(e["actor"], e["action"]) for e in reversed(store.list_audit())]
    assert actions == [(audit.cli_actor(), "job.cancel"), (audit.cli_actor(), "user.create")]
    assert '"action": "user.create"' in cli("audit", "list", "--json", "--since", "1h").output
    # --until, as the console's To date: a date alone is through its end
    today = datetime.now(UTC).date().isoformat()
    assert len(json.loads(cli("audit", "list", "--json", "--since", today, "--until", today).output)) == 2
    assert cli("audit", "list", "--until", "1h").output.strip() == "No audit entries."
    assert cli_error("audit", "list", "--until", "soon") == \
        "Error: --until 'soon': give a duration (24h, 7d) or a date (2026-12-01)"


def test_a_keyed_chain_verifies_only_with_its_key(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from halguru.store import open_store

    store = open_store()
    audit.record(store, None, "user.create", "usr_1")  # from before the key: stays plain, still verifies
    monkeypatch.setenv(audit.KEY_ENV, "s3cret")
    entry = audit.record(store, None, "user.role", "usr_1", {"role": "admin"})
    assert entry is not None and entry["alg"] == "hmac-sha256"
    assert "audit chain intact: 2 entries" in cli("audit", "verify").output
    monkeypatch.setenv(audit.KEY_ENV, "another")
    assert "audit chain broken at entry 2: hash mismatch" in cli("audit", "verify", code=1).output
    monkeypatch.delenv(audit.KEY_ENV)
    assert "broken at entry 2: key: a keyed entry" in cli("audit", "verify", code=1).output
    with pytest.raises(ValueError, match=r"resource\.verb"):
        audit.record(store, None, "deleted everything", "x")
