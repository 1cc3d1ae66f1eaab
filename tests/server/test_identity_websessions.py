"""Web sessions: a new id on every sign-in, cookie flags (Secure over https or a trusted proxy's https), idle
and absolute timeouts, server-side sign-out, and the CSRF checks (token and Origin)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient
from halguru_server.identity import accounts, websessions
from halguru_server.identity.settings import AuthSettings

from halguru.store import SQLiteStore


@pytest.fixture
def app(tmp_path: Path):
    store = SQLiteStore(tmp_path / "s.db")
    app = FastAPI()
    app.state.halguru = SimpleNamespace(store=store, settings=SimpleNamespace(
        auth=AuthSettings(session_idle="1h"), trusted_proxies=["127.0.0.0/8"]))
    user = accounts.create_user(store, "ann@example.com")

    @app.post("/in")
    def sign_in(request: Request, response: Response) -> dict:
        return {"csrf": websessions.sign_in(request, response, user)["csrf"]}

    @app.post("/out")
    def sign_out(request: Request, response: Response) -> dict:
        return {"revoked": websessions.sign_out(request, response)}

    @app.post("/change")
    async def change(request: Request) -> dict:
        found = websessions.verify(store, request.cookies.get(websessions.COOKIE, ""), AuthSettings())
        assert found is not None
        return {"ok": await websessions.csrf_ok(request, found[0], [])}

    yield app, store, user
    store.close()


def test_every_sign_in_is_a_new_session_with_safe_cookie_flags(app) -> None:
    app, store, user = app
    client = TestClient(app)
    first = client.post("/in")
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    old = client.cookies[websessions.COOKIE]
    client.post("/in")
    new = client.cookies[websessions.COOKIE]
    assert new != old  # no fixation: the old session is revoked, not reused
    assert websessions.verify(store, old, AuthSettings()) is None
    assert websessions.verify(store, new, AuthSettings())[1]["id"] == user["id"]
    assert "Secure" in TestClient(app, base_url="https://testserver").post("/in").headers["set-cookie"]
    proxy = TestClient(app, client=("127.0.0.1", 5000))  # a trusted proxy's word
    assert "Secure" in proxy.post("/in", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "Secure" not in client.post("/in", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert client.post("/out").json() == {"revoked": True}
    assert websessions.verify(store, client.cookies.get(websessions.COOKIE) or new, AuthSettings()) is None


def test_sessions_time_out_idle_and_absolute_and_die_with_a_disabled_user(app) -> None:
    _, store, user = app
    settings = AuthSettings(session_idle=60, session_max_age=3600)
    secret, record = websessions.issue(store, user["id"], settings)
    assert websessions.verify(store, secret, settings) is not None
    store.touch_web_session(record["id_hash"], time.time() - 61)
    assert websessions.verify(store, secret, settings) is None  # idle
    secret, record = websessions.issue(store, user["id"], AuthSettings(session_max_age=1))
    assert store.revoke_web_sessions(None, []) == 0  # nothing named: nothing revoked
    time.sleep(1.1)
    assert websessions.verify(store, secret, settings) is None  # absolute
    secret, record = websessions.issue(store, user["id"], settings)
    assert [websessions.session_id(s) for s in websessions.list_sessions(store, user["id"], settings)] == \
        [websessions.session_id(record)]
    accounts.disable_user(store, user["id"], disabled=False)
    store.update_user(user["id"], disabled=True)
    assert websessions.verify(store, secret, settings) is None
    store.update_user(user["id"], disabled=False)
    other, _ = websessions.issue(store, user["id"], settings)
    assert websessions.revoke_by_id(store, user["id"], websessions.session_id(record))
    assert not websessions.revoke_by_id(store, "usr_other", "whatever")
    assert websessions.revoke_all(store, user["id"]) == 3  # the live one, the idle one, the old one
    assert websessions.verify(store, other, settings) is None


def test_a_state_change_needs_the_csrf_token_and_this_origin(app) -> None:
    app, _, _ = app
    client = TestClient(app)
    csrf = client.post("/in").json()["csrf"]
    here = {"Origin": "http://testserver"}
    assert client.post("/change", headers={**here, "X-CSRF-Token": csrf}).json() == {"ok": True}
    assert client.post("/change", data={"csrf_token": csrf}, headers=here).json() == {"ok": True}
    assert client.post("/change", headers=here).json() == {"ok": False}  # no token
    assert client.post("/change", headers={**here, "X-CSRF-Token": "x" + csrf}).json() == {"ok": False}
    evil = {"Origin": "https://evil.example", "X-CSRF-Token": csrf}
    assert client.post("/change", headers=evil).json() == {"ok": False}  # a cross-site form
    assert client.post("/change", headers={"X-CSRF-Token": csrf}).json() == {"ok": False}  # no Origin/Referer
    referer = {"Referer": "http://testserver/admin/page", "X-CSRF-Token": csrf}
    assert client.post("/change", headers=referer).json() == {"ok": True}


def test_a_sign_in_deletes_sessions_and_tokens_that_ended_a_day_ago(app) -> None:
    _, store, user = app
    settings = AuthSettings()
    _, old = websessions.issue(store, user["id"], settings)
    _, recent = websessions.issue(store, user["id"], settings)
    store.revoke_web_sessions(user["id"], [old["id_hash"], recent["id_hash"]])
    store.create_auth_token("t-old", "reset", user["id"], None, time.time() - 2 * 86400)
    with store._tx() as conn:  # as if revoked two days ago
        conn.execute("UPDATE web_sessions SET revoked = ? WHERE id_hash = ?", (time.time() - 2 * 86400,
                                                                               old["id_hash"]))
    websessions.issue(store, user["id"], settings)
    assert store.get_web_session(old["id_hash"]) is None
    assert store.get_web_session(recent["id_hash"]) is not None  # kept a day (the account page may show it)
    assert store._rows("SELECT count(*) AS n FROM auth_tokens")[0]["n"] == 0
