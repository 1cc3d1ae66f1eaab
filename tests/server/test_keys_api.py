"""/v1/keys: users make their own keys, which act as them and never reach wider than the caller."""

from __future__ import annotations

import httpx


def _browser(server, role: str, email: str) -> tuple[httpx.Client, str]:
    """A signed-in browser of a new user with ``role`` (its CSRF token set, as the pages send it)."""
    from halguru_server.identity import accounts, websessions

    user = accounts.create_user(server.state.store, email, role=role)
    secret, session = websessions.issue(server.state.store, user["id"], server.state.settings.auth)
    client = httpx.Client(base_url=server.url, cookies={websessions.COOKIE: secret},
                          headers={"Origin": server.url, "X-CSRF-Token": session["csrf"]})
    return client, user["id"]


def test_a_developer_creates_a_key_that_acts_as_them_and_revokes_it(serve) -> None:
    server = serve()
    dev, dev_id = _browser(server, "developer", "dev@example.com")
    made = dev.post("/v1/keys", json={"name": "laptop", "agents": ["private"], "expires": "30d"})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["user_id"] == dev_id and key["scope"] == "user" and key["state"] == "active"
    assert key["secret"].startswith("hg_") and "secret" not in dev.get("/v1/keys").json()["data"][0]
    bearer = {"Authorization": f"Bearer {key['secret']}"}
    conversation = httpx.post(f"{server.url}/v1/conversations", json={"agent": "private"}, headers=bearer)
    assert conversation.status_code == 201
    # what the key made is the user's: the browser sees it too
    assert [c["id"] for c in dev.get("/v1/conversations").json()["data"]] == [conversation.json()["id"]]
    outside = httpx.post(f"{server.url}/v1/conversations", json={"agent": "echo"}, headers=bearer)
    assert outside.status_code == 404  # an agent outside the key's: as if it did not exist (its name not confirmed)
    assert dev.delete(f"/v1/keys/{key['id']}").json()["state"] == "revoked"
    assert httpx.get(f"{server.url}/v1/agents", headers=bearer).status_code == 401


def test_keys_are_private_to_their_user_and_admins_see_all(serve) -> None:
    server = serve()
    ann, _ = _browser(server, "developer", "ann@example.com")
    bob, bob_id = _browser(server, "developer", "bob@example.com")
    admin, _ = _browser(server, "admin", "root@example.com")
    ann_key = ann.post("/v1/keys", json={"name": "a"}).json()
    bob.post("/v1/keys", json={"name": "b"})
    assert [k["name"] for k in bob.get("/v1/keys").json()["data"]] == ["b"]
    assert bob.delete(f"/v1/keys/{ann_key['id']}").status_code == 404  # like a key that does not exist
    assert bob.get("/v1/keys", params={"all": "true"}).status_code == 403
    assert sorted(k["name"] for k in admin.get("/v1/keys", params={"all": "true"}).json()["data"]) == ["a", "b"]
    assert [k["name"] for k in admin.get("/v1/keys", params={"user": bob_id}).json()["data"]] == ["b"]
    assert admin.delete(f"/v1/keys/{ann_key['id']}").json()["state"] == "revoked"


def test_roles_and_keys_cannot_mint_wider_keys(serve) -> None:
    server = serve()
    end_user, _ = _browser(server, "user", "u@example.com")
    assert end_user.post("/v1/keys", json={"name": "x"}).status_code == 403  # users have no keys:own
    dev, _ = _browser(server, "developer", "d@example.com")
    assert dev.post("/v1/keys", json={"name": "x", "admin": True}).status_code == 403
    assert dev.post("/v1/keys", json={"name": "x", "agents": ["nope"]}).status_code == 404  # as for any unknown agent
    assert dev.post("/v1/keys", json={"name": "x", "expires": "soon"}).status_code == 400
    narrow = dev.post("/v1/keys", json={"name": "narrow", "agents": ["echo"], "expires": "1h"}).json()
    as_key = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {narrow['secret']}"})
    for wider in ({"name": "w", "expires": "1h"}, {"name": "w", "agents": ["echo", "private"], "expires": "1h"},
                  {"name": "w", "agents": ["echo"]}, {"name": "w", "agents": ["echo"], "expires": "2h"}):
        refused = as_key.post("/v1/keys", json=wider)
        assert refused.status_code == 403, (wider, refused.text)
    within = as_key.post("/v1/keys", json={"name": "ok", "agents": ["echo"], "expires": "30m"})
    assert within.status_code == 201
    # nor revoke the user's broader keys (a stolen narrow key cutting off the keys its user relies on)
    broad = dev.post("/v1/keys", json={"name": "broad"}).json()
    refused = as_key.delete(f"/v1/keys/{broad['id']}")
    assert refused.status_code == 403 and "only revoke keys for its own agents: echo" in refused.text
    assert httpx.get(f"{server.url}/v1/agents", headers={"Authorization": f"Bearer {broad['secret']}"}).is_success
    assert as_key.delete(f"/v1/keys/{within.json()['id']}").json()["state"] == "revoked"
    assert as_key.delete(f"/v1/keys/{narrow['id']}").json()["state"] == "revoked"  # itself: always
    # a signed-in state change without the CSRF token is refused; a key needs none
    del dev.headers["X-CSRF-Token"]
    assert dev.post("/v1/keys", json={"name": "x"}).status_code == 403


def test_only_a_key_of_the_users_full_reach_lists_and_ends_their_web_sessions(serve) -> None:
    """A narrow key (some agents, or expiring) gets a one-line 403 for the account's web sessions: a stolen
    one must not see where the user is signed in nor sign every browser out."""
    server = serve()
    dev, _ = _browser(server, "developer", "dev@example.com")
    [session] = dev.get("/auth/sessions").json()["data"]
    for limits, says in (({"agents": ["echo"]}, "limited to echo;"), ({"expires": "1h"}, "limited in time"),
                         ({"agents": ["echo"], "expires": "1h"}, "limited to echo and in time")):
        secret = dev.post("/v1/keys", json={"name": "narrow", **limits}).json()["secret"]
        narrow = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"})
        for refused in (narrow.get("/auth/sessions"), narrow.post("/auth/logout-all"),
                        narrow.delete(f"/auth/sessions/{session['id']}")):
            assert refused.status_code == 403, (limits, refused.text)
            message = refused.json()["error"]["message"]
            assert says in message and "\n" not in message and "sign in at /auth/account" in message
        assert narrow.get("/v1/agents").is_success  # what the key is for still works
    assert dev.get("/auth/me").json()["via"] == "session"  # the browser is still signed in
    secret = dev.post("/v1/keys", json={"name": "full"}).json()["secret"]
    full = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"})
    assert [s["id"] for s in full.get("/auth/sessions").json()["data"]] == [session["id"]]
    assert full.post("/auth/logout-all").json() == {"revoked": 1}
    assert dev.get("/auth/me").status_code == 401  # signed out everywhere


def test_a_user_holds_a_bounded_number_of_active_keys(serve, monkeypatch) -> None:
    """A developer made keys at will (20,000 in 20 s in the store), and every revoke read them all: 1.5-2.8 s each
    with 20,000. Past ``MAX_ACTIVE_PER_USER`` active keys, POST /v1/keys is a 409 ``too_many_keys`` saying what to
    do; a revoked key frees its place, and other users are not affected."""
    from halguru_server import keys

    monkeypatch.setattr(keys, "MAX_ACTIVE_PER_USER", 3, raising=False)  # raising: the cap did not exist
    server = serve()
    dev, _ = _browser(server, "developer", "dev@example.com")
    made = [dev.post("/v1/keys", json={"name": f"k{i}"}) for i in range(3)]
    assert [m.status_code for m in made] == [201] * 3
    refused = dev.post("/v1/keys", json={"name": "one too many"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == {"type": "too_many_keys", "message": "you have 3 active keys, the most one "
                                       "user may hold; revoke one you no longer use first (DELETE /v1/keys/ID)"}
    assert [k["name"] for k in dev.get("/v1/keys").json()["data"]].count("one too many") == 0  # nothing stored
    other, _ = _browser(server, "developer", "other@example.com")
    assert other.post("/v1/keys", json={"name": "theirs"}).status_code == 201
    assert dev.delete(f"/v1/keys/{made[0].json()['id']}").status_code == 200
    assert dev.post("/v1/keys", json={"name": "again"}).status_code == 201


def test_a_new_key_whose_random_id_is_taken_gets_another(serve, monkeypatch) -> None:
    """Key ids are 8 random hex digits (32 bits): a new key drawing the id of a stored one was an HTTP 500 (the
    id is the table's key). Now another id is drawn; the stored key keeps its id and keeps working."""
    import secrets

    server = serve()
    dev, _ = _browser(server, "developer", "dev@example.com")
    first = dev.post("/v1/keys", json={"name": "first"}).json()
    draw, drawn = secrets.token_hex, []

    def colliding(nbytes: int | None = None) -> str:  # the next key id drawn is the first key's, once
        if nbytes == 4 and not drawn:
            drawn.append(first["id"])
            return str(first["id"])
        return draw(nbytes)

    monkeypatch.setattr(secrets, "token_hex", colliding)
    second = dev.post("/v1/keys", json={"name": "second"})
    assert drawn and second.status_code == 201, second.text
    assert second.json()["id"] != first["id"] and second.json()["secret"].startswith(f"hg_{second.json()['id']}_")
    assert {k["name"]: k["id"] for k in dev.get("/v1/keys").json()["data"]} == {
        "first": first["id"], "second": second.json()["id"]}
    for made in (first, second.json()):
        me = httpx.get(f"{server.url}/auth/me", headers={"Authorization": f"Bearer {made['secret']}"})
        assert me.status_code == 200, me.text
