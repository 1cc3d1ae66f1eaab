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
