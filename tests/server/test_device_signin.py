"""The device sign-in (`halguru login URL`) against a real server, as an attacker tries it: guessing other
people's live user codes from a signed-in browser, and a link with someone else's code sent to a victim."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.server.conftest import Server

DEVICE_UA = "halguru/1.0 (device login)"


def _browser(server: Server, role: str = "developer",
             email: str = "dev@example.com") -> tuple[httpx.Client, str, dict[str, Any]]:
    """A browser signed in (both factors) as a new user: the client, its session's CSRF token and the user."""
    from halguru_server.identity import websessions

    store = server.state.store
    user = store.create_user(f"usr_{email.split('@')[0]}", email, "Dev", role)
    assert user is not None
    secret, session = websessions.issue(store, user["id"], server.state.settings.auth)
    client = httpx.Client(base_url=server.url, cookies={websessions.COOKIE: secret},
                          headers={"Origin": server.url}, timeout=30)
    return client, session["csrf"], dict(user)


def _start(server: Server, **headers: str) -> dict[str, Any]:
    started = httpx.post(server.url + "/auth/device/code", headers={"User-Agent": DEVICE_UA, **headers})
    assert started.status_code == 200, started.text
    return started.json()


def _poll(server: Server, flow: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/auth/device/token", json={"device_code": flow["device_code"]})


def test_a_signed_in_person_cannot_guess_other_peoples_device_codes(serve: Callable[..., Server]) -> None:
    server = serve()
    victim_flow = _start(server)  # someone's `halguru login` waits for its code to be approved
    attacker, token, _ = _browser(server)
    with attacker:
        answers = [attacker.post("/auth/device", data={"csrf_token": token, "user_code": f"BBBBBB{i:02d}"})
                   for i in range(12)]
        assert [a.status_code for a in answers[:10]] == [400] * 10  # mistyped codes: ten in ten minutes
        assert [a.status_code for a in answers[10:]] == [429, 429]
        assert "Too many codes tried" in answers[-1].text
        # even the right code is refused now: guessing on would get nowhere
        hit = attacker.post("/auth/device", data={"csrf_token": token, "user_code": victim_flow["user_code"]})
        assert hit.status_code == 429
    assert _poll(server, victim_flow).json()["error"]["type"] == "authorization_pending"
    other, other_token, _ = _browser(server, email="owner@example.com")  # a limit of that account's, not everyone's
    with other:
        approved = other.post("/auth/device", data={"csrf_token": other_token, "user_code": victim_flow["user_code"]})
        assert approved.status_code == 200 and "Program signed in" in approved.text
    assert _poll(server, victim_flow).status_code == 200


def test_a_link_with_someone_elses_code_says_where_that_program_asked_from(serve: Callable[..., Server]) -> None:
    """An attacker runs `halguru login` and mails the victim its verification_uri_complete: the victim's page says
    the program asked from another address than the victim's browser, and the key it gets is named after it."""
    server = serve(trusted_proxies=["127.0.0.1"])  # behind a proxy: each side's address from X-Forwarded-For
    flow = _start(server, **{"X-Forwarded-For": "203.0.113.9"})
    victim, token, _ = _browser(server)
    with victim:
        page = victim.get(flow["verification_uri_complete"], headers={"X-Forwarded-For": "198.51.100.7"})
        assert page.status_code == 200 and flow["user_code"] in page.text
        assert "203.0.113.9" in page.text and DEVICE_UA in page.text and "just now" in page.text
        assert "not this browser's address" in page.text and "do not approve" in page.text
        own = victim.get(flow["verification_uri_complete"], headers={"X-Forwarded-For": "203.0.113.9"})
        assert "203.0.113.9" in own.text and "not this browser's address" not in own.text  # the person's own
        gone = victim.get("/auth/device?code=BBBB-BBBB")
        assert gone.status_code == 400 and "not valid" in gone.text and "asked for" not in gone.text
        approved = victim.post("/auth/device", data={"csrf_token": token, "user_code": flow["user_code"]})
        assert approved.status_code == 200
    assert _poll(server, flow).status_code == 200
    names = [k["name"] for k in server.state.store.list_keys()]
    assert len(names) == 1 and names[0].startswith("halguru login from 203.0.113.9 ("), names
