"""What a signed-in caller reads is its own: answers to a request that a session cookie, an API key or a chat
session authenticated say ``Cache-Control: no-store``, so no cache in front (a CDN, a proxy's cache) keeps one
caller's answer to hand to the next, and no browser keeps it on disk. Public answers keep their own caching."""

from __future__ import annotations

import httpx

from tests.server.localaccounts import accounts_server_fixture, sign_in, smtp_server_fixture

__all__ = ["accounts_server_fixture", "smtp_server_fixture"]  # pytest finds them here


def test_answers_to_authenticated_requests_are_not_stored(accounts_server, api_key) -> None:
    accounts = accounts_server()
    accounts.user("di@example.com")
    key = {"Authorization": f"Bearer {api_key()}"}
    with accounts.client() as browser:
        assert sign_in(browser, "di@example.com").status_code == 303
        me = browser.get("/auth/me")  # the session's CSRF token, and who it is
        assert me.status_code == 200 and me.json()["csrf"]
        assert me.headers.get("cache-control") == "no-store"
        assert browser.get("/chat/api/conversations").headers.get("cache-control") == "no-store"
        static = browser.get("/chat/static/chat.js")  # the same for everyone: still cached and revalidated
        assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")
    with httpx.Client(base_url=accounts.url) as client:
        session = {"X-Chat-Session": client.post("/chat/api/session").json()["token"]}
        conv = client.post("/chat/api/conversations", json={"agent": "echo"}, headers=session)
        assert conv.status_code == 201 and conv.headers.get("cache-control") == "no-store"
        keyed = client.get("/v1/conversations", headers=key)
        assert keyed.status_code == 200 and keyed.headers.get("cache-control") == "no-store"
        public = client.get("/chat/api/agents")  # nobody's: no header forced on it
        assert public.status_code == 200 and "no-store" not in public.headers.get("cache-control", "")
