"""/v1/users: an admin lists users, changes roles, disables and enables them, resets their second factor; an
admin cannot demote or disable themselves; nobody else may."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from halguru_server import ServerSettings, create_app
from halguru_server.identity import accounts, websessions
from halguru_server.keys import create_key


@pytest.fixture
def app(agents_dir: Path):
    app = create_app(ServerSettings(agents=[agents_dir], worker=False, keep_mcp_servers=False))
    with TestClient(app):
        yield app


def test_an_admin_manages_users_and_nobody_else_may(app) -> None:
    state = app.state.halguru
    store = state.store
    client = TestClient(app)
    root = accounts.create_user(store, "root@example.com", role="admin")
    ann = accounts.create_user(store, "ann@example.com", role="developer")
    admin = {"Authorization": f"Bearer {create_key(store, 'root', scope='admin', user_id=root['id'])[1]}"}
    dev = {"Authorization": f"Bearer {create_key(store, 'ann', scope='admin', user_id=ann['id'])[1]}"}
    listed = client.get("/v1/users", headers=admin).json()["data"]
    assert [u["email"] for u in listed] == ["root@example.com", "ann@example.com"]
    assert "password_hash" not in listed[0] and "totp_secret" not in listed[0]
    assert client.get("/v1/users", headers=dev).status_code == 403
    assert client.patch(f"/v1/users/{ann['id']}", headers=dev, json={"role": "admin"}).status_code == 403
    changed = client.patch(f"/v1/users/{ann['id']}", headers=admin, json={"role": "operator"}).json()
    assert changed["role"] == "operator" == store.get_user(ann["id"])["role"]
    secret, _ = websessions.issue(store, ann["id"], state.settings.auth)
    assert client.patch(f"/v1/users/{ann['id']}", headers=admin, json={"disabled": True}).json()["disabled"]
    assert websessions.verify(store, secret, state.settings.auth) is None  # signed out
    assert client.get("/v1/agents", headers=dev).status_code == 401  # their keys stop working
    assert not client.patch(f"/v1/users/{ann['id']}", headers=admin, json={"disabled": False}).json()["disabled"]
    assert client.get("/v1/agents", headers=dev).status_code == 200
    # the audit log says which it was: an "enable" filter finds the enabling (it was a user.disable, disabled false)
    assert [e["action"] for e in store.list_audit(action="user.enable")] == ["user.enable"]
    assert [e["action"] for e in store.list_audit(action="user.disable")] == ["user.disable"]
    store.set_totp(ann["id"], "SECRET", enabled=True)
    assert not client.post(f"/v1/users/{ann['id']}/reset-2fa", headers=admin).json()["totp_enabled"]
    for _ in range(5):
        store.record_login_failure(ann["id"], 5, 60, 900)
    assert client.get("/v1/users", headers=admin).json()["data"][1]["locked_until"] > 0
    assert client.post(f"/v1/users/{ann['id']}/unlock", headers=dev).status_code == 403
    assert client.post(f"/v1/users/{ann['id']}/unlock", headers=admin).json()["locked_until"] is None
    assert store.get_user(ann["id"])["locked_until"] is None
    assert client.post("/v1/users/usr_nobody/unlock", headers=admin).status_code == 404
    assert client.patch(f"/v1/users/{root['id']}", headers=admin, json={"role": "user"}).status_code == 400
    assert client.patch(f"/v1/users/{root['id']}", headers=admin, json={"disabled": True}).status_code == 400
    assert client.patch("/v1/users/usr_nobody", headers=admin, json={"role": "user"}).status_code == 404
    assert client.patch(f"/v1/users/{ann['id']}", headers=admin, json={"role": "root"}).status_code == 422


def test_a_user_less_admin_key_cannot_leave_the_server_without_an_admin(app, halguru_cmd, subprocess_env) -> None:
    """`keys create --admin` belongs to no user, so "not yourself" did not stop it demoting the only admin."""
    import subprocess

    store = app.state.halguru.store
    client = TestClient(app)
    root = accounts.create_user(store, "root@example.com", role="admin")
    ops = accounts.create_user(store, "ops@example.com", role="operator")
    key = {"Authorization": f"Bearer {create_key(store, 'automation', scope='admin')[1]}"}
    for change in ({"role": "user"}, {"disabled": True}):
        refused = client.patch(f"/v1/users/{root['id']}", headers=key, json=change)
        assert refused.status_code == 400 and "last enabled admin" in refused.json()["error"]["message"]
    assert store.get_user(root["id"])["role"] == "admin" and not store.get_user(root["id"])["disabled"]
    assert client.patch(f"/v1/users/{ops['id']}", headers=key, json={"role": "admin"}).status_code == 200
    assert client.patch(f"/v1/users/{root['id']}", headers=key, json={"role": "user"}).status_code == 200  # one left
    shell = subprocess.run([*halguru_cmd, "users", "disable", "ops@example.com"], env=subprocess_env,
                           capture_output=True, text=True, timeout=60)
    assert shell.returncode == 1 and "last enabled admin" in shell.stderr and "Traceback" not in shell.stderr
    assert store.get_user(ops["id"])["role"] == "admin" and not store.get_user(ops["id"])["disabled"]


def test_users_come_in_pages_with_a_cursor_and_a_search(app) -> None:
    store = app.state.halguru.store
    client = TestClient(app)
    root = accounts.create_user(store, "root@example.com", role="admin")
    admin = {"Authorization": f"Bearer {create_key(store, 'root', scope='admin', user_id=root['id'])[1]}"}
    for i in range(59):
        accounts.create_user(store, f"person{i:02d}@example.com", name=f"Person {i:02d}")
    first = client.get("/v1/users", headers=admin).json()
    assert len(first["data"]) == 50 and first["data"][0]["email"] == "root@example.com"  # 50 by default
    accounts.create_user(store, "late@example.com")  # created between two pages: at the end, once
    second = client.get("/v1/users", headers=admin, params={"cursor": first["next_cursor"]}).json()
    assert [u["email"] for u in second["data"]] == [f"person{i:02d}@example.com" for i in range(49, 59)] + [
        "late@example.com"]
    assert second["next_cursor"] is None
    found = client.get("/v1/users", headers=admin, params={"q": "PERSON 1", "limit": 4}).json()
    assert [u["name"] for u in found["data"]] == [f"Person {i}" for i in range(10, 14)]
    more = client.get("/v1/users", headers=admin, params={"q": "person 1", "limit": 4,
                                                          "cursor": found["next_cursor"]}).json()
    assert [u["name"] for u in more["data"]] == [f"Person {i}" for i in range(14, 18)]
    assert client.get("/v1/users", headers=admin, params={"q": "nobody"}).json() == {"data": [], "next_cursor": None}
    bad = client.get("/v1/users", headers=admin, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400 and "invalid cursor" in bad.json()["error"]["message"]
    assert client.get("/v1/users", headers=admin, params={"limit": 201}).status_code == 422


def test_links_made_behind_a_tls_proxy_say_https(serve) -> None:
    """Without ``auth.public_url``, behind a proxy that ends TLS (``trusted_proxies``): an invitation's link and
    `halguru login`'s verification address said http, the scheme of the proxy's own request."""
    import httpx

    server = serve(trusted_proxies=["127.0.0.1/32"])
    _, secret = create_key(server.state.store, "ops", scope="admin")
    headers = {"Authorization": f"Bearer {secret}", "X-Forwarded-Proto": "https"}
    host = server.url.partition("://")[2]
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        link = client.post("/v1/invites", json={"role": "user"}).json()["link"]
        device = client.post("/auth/device/code").json()
    assert link.startswith(f"https://{host}/auth/register?invite=")
    assert device["verification_uri"] == f"https://{host}/auth/device"
