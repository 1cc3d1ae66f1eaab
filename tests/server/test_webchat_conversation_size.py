"""An anonymous web-chat visitor's conversation holds at most ``max_public_conversation_chars`` characters, any
other at most ``max_conversation_chars``."""

from __future__ import annotations

import httpx

from tests.server.conftest import Server

FILE = b"word " * 10_000  # 50,000 characters: the most one attachment may hold


def test_an_anonymous_conversation_stops_growing_at_its_cap(serve, api_key) -> None:
    """Measured: within the rate limit one visitor attached 600 files of 50,000 characters to one conversation
    (30 MB); each read of its history took 2-3.6 s and 30 MB, and four at once held /healthz up to 2.1 s. Now a
    message or attachment that would take it past 500,000 characters (the default) is a 409
    ``conversation_full`` saying to start a new conversation, nothing of it is stored, and a new conversation
    (or a keyed caller's) is not affected."""
    server: Server = serve(public_rate_per_minute=1000)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.headers["X-Chat-Session"] = http.post("/chat/api/session").json()["token"]
        conv = http.post("/chat/api/conversations", json={"agent": "echo"}).json()["id"]

        def attach(cid: str = conv) -> httpx.Response:
            return http.post(f"/chat/api/conversations/{cid}/attachments", params={"name": "a.txt"}, content=FILE)

        assert [attach().status_code for _ in range(9)] == [201] * 9  # 9 x 50,023 characters
        history = f"/chat/api/conversations/{conv}/messages"
        held = sum(len(m["content"]) for m in http.get(history).json()["data"])
        assert held == 450_207
        full = attach()
        assert full.status_code == 409, full.text
        assert full.json()["error"] == {"type": "conversation_full", "message": "this conversation holds 450207 "
                                        "characters and a public chat keeps at most 500000; start a new conversation"}
        assert len(http.get(history).json()["data"]) == 9  # nothing stored
        assert http.post(f"/chat/api/conversations/{conv}/messages", json={"content": "z"}).status_code == 200
        assert attach(http.post("/chat/api/conversations", json={"agent": "echo"}).json()["id"]).status_code == 201
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {api_key()}"}) as keyed:
        mine = keyed.post("/chat/api/conversations", json={"agent": "echo"}).json()["id"]
        for _ in range(11):  # a key's conversation has a larger cap of its own (max_conversation_chars)
            made = keyed.post(f"/chat/api/conversations/{mine}/attachments", params={"name": "a.txt"}, content=FILE)
            assert made.status_code == 201


def test_a_message_past_the_cap_is_refused_before_its_run(serve) -> None:
    server: Server = serve(max_public_conversation_chars=1000)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.headers["X-Chat-Session"] = http.post("/chat/api/session").json()["token"]
        conv = http.post("/chat/api/conversations", json={"agent": "echo"}).json()["id"]
        assert http.post(f"/chat/api/conversations/{conv}/messages", json={"content": "x" * 400}).status_code == 200
        full = http.post(f"/chat/api/conversations/{conv}/messages", json={"content": "x" * 400})
        assert full.status_code == 409 and full.json()["error"]["type"] == "conversation_full"  # 400 + answer + 400
        assert server.state.store.list_runs(conversation_id=conv)[0]["status"] == "ok"  # one run: no second one
        assert len(server.state.store.list_runs(conversation_id=conv)) == 1


def test_a_keyed_conversation_stops_growing_at_its_own_cap(serve, api_key) -> None:
    """A key's (or a signed-in user's) conversation had no cap at all: one client could grow a history every run
    and every read loads whole. ``max_conversation_chars`` caps it (messages through /v1 and the chat, files)."""
    server: Server = serve(max_conversation_chars=1000)
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {api_key()}"}) as keyed:
        conv = keyed.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        assert keyed.post(f"/v1/conversations/{conv}/messages", json={"content": "x" * 400}).status_code == 200
        full = keyed.post(f"/v1/conversations/{conv}/messages", json={"content": "x" * 400})
        assert full.status_code == 409, full.text
        assert full.json()["error"] == {"type": "conversation_full", "message": "this conversation holds 810 "
                                        "characters and a conversation keeps at most 1000 "
                                        "(HALGURU_SERVE_MAX_CONVERSATION_CHARS); start a new conversation"}
        assert keyed.post(f"/chat/api/conversations/{conv}/messages", json={"content": "x" * 400}).status_code == 409
        attached = keyed.post(f"/chat/api/conversations/{conv}/attachments", params={"name": "a.txt"},
                              content=b"word " * 100)
        assert attached.status_code == 409 and attached.json()["error"]["type"] == "conversation_full"
        assert len(server.state.store.list_runs(conversation_id=conv)) == 1  # no run for a refused message
        assert server.state.store.count_messages(conv) == 2
    unlimited: Server = serve(max_conversation_chars=0)  # 0: no cap
    with httpx.Client(base_url=unlimited.url, timeout=30, headers={"Authorization": f"Bearer {api_key()}"}) as keyed:
        conv = keyed.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        for _ in range(3):
            assert keyed.post(f"/v1/conversations/{conv}/messages", json={"content": "x" * 5000}).status_code == 200
