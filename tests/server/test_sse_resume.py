"""SSE streams resumable on another replica (two apps on one store, each on its own real uvicorn): event ids,
``GET /v1/runs/{id}/events`` with ``Last-Event-ID`` while the run goes on elsewhere, 204 once it is over, and the
replica affinity header and cookie."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.server.conftest import Server
from tests.server.test_serve_api import new_conversation


def blocks(response: httpx.Response) -> list[dict[str, Any]]:
    """Each SSE block as {id, event, data} (comments and retry-only blocks left out)."""
    return list(iter_blocks(response))


def iter_blocks(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """``blocks``, each as it comes."""
    block: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "event" in block:
                yield block
            block = {}
        elif line.startswith(("id: ", "event: ")):
            key, _, value = line.partition(": ")
            block[key] = value
        elif line.startswith("data: "):
            block["data"] = json.loads(line[6:])


def streaming(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[str, list[dict[str, Any]],
                                                                             threading.Thread]:
    """Post ``body`` as a stream read on a thread, kept open; (the run's id, the blocks read so far and on, the
    thread) once the first token came."""
    live: list[dict[str, Any]] = []
    token = threading.Event()

    def listen() -> None:
        with client.stream("POST", path, json={**body, "stream": True}) as response:
            for block in iter_blocks(response):
                live.append(block)
                if block["event"] == "token":
                    token.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert token.wait(10), live
    return live[0]["id"].split(":")[0], live, listener


def keyed(server: Server, secret: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def test_a_stream_cut_on_one_replica_resumes_on_another(serve: Callable[..., Server],
                                                          api_key: Callable[..., str]) -> None:
    secret = api_key()
    one, two = keyed(serve(), secret), keyed(serve(), secret)
    conv = new_conversation(one, "slow")
    # the run's own stream stays open on replica one (closing it would stop the run)
    run_id, live, listener = streaming(one, f"/v1/conversations/{conv}/messages", {"content": "go"})
    seen = live[1]["id"]  # the client got run_started and one more event, then lost replica one
    with two.stream("GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": seen}) as resumed:
        assert resumed.status_code == 200 and resumed.headers["content-type"].startswith("text/event-stream")
        rest = blocks(resumed)
    listener.join(10)

    ids = [int(b["id"].split(":")[1]) for b in live]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and all(b["id"].startswith(run_id) for b in live)
    assert rest[-1]["event"] == "run_finished" and rest[-1]["data"]["output"].startswith("word0 word1")
    stored = [b for b in live if b["event"] != "token" and int(b["id"].split(":")[1]) > int(seen.split(":")[1])]
    assert [(b["id"], b["event"]) for b in rest] == [(b["id"], b["event"]) for b in stored]  # the same, tokens aside
    assert rest[-1]["data"] == live[-1]["data"]

    # Reconnecting after the end: 204 (a browser's EventSource stops retrying); ?after= for clients without headers.
    assert two.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": rest[-1]["id"]}).status_code == 204
    with two.stream("GET", f"/v1/runs/{run_id}/events", params={"after": -1}) as whole:
        kinds = [b["event"] for b in blocks(whole)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "token" not in kinds
    assert two.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "run_0123456789:3"}).status_code == 400
    assert two.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "garbage"}).status_code == 400
    with keyed(serve(), api_key("other")) as stranger:
        assert stranger.get(f"/v1/runs/{run_id}/events").status_code == 404  # another key's run leaks nothing


def test_replica_affinity_header_and_cookie(serve: Callable[..., Server], api_key: Callable[..., str]) -> None:
    a, b = serve(replica_id="replica-a"), serve()
    with keyed(a, api_key()) as client:
        first = client.get("/v1/agents")
        assert first.headers["x-halguru-replica"] == "replica-a"
        assert first.headers["set-cookie"] == "halguru_replica=replica-a; Path=/; HttpOnly; SameSite=Lax"
        again = client.get("/v1/agents")  # the client holds the cookie now: not set again
        assert again.headers["x-halguru-replica"] == "replica-a" and "set-cookie" not in again.headers
    named = httpx.get(f"{b.url}/healthz").headers["x-halguru-replica"]
    assert named.endswith(f":{b.state.settings.port}") and named != "replica-a"  # default: HOSTNAME:PORT



def _running(client: httpx.Client, conversation: str, path: str) -> tuple[str, threading.Thread]:
    """A slow answer streamed on a thread (its stream stays open: closing it would stop the run); its run id."""
    started: list[str] = []
    first = threading.Event()

    def listen() -> None:
        with client.stream("POST", path.format(conversation), json={"content": "go", "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("id: ") and not started:
                    started.append(line[4:].split(":")[0])
                    first.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert first.wait(10)
    return started[0], listener


def test_one_client_follows_a_bounded_number_of_streams(serve: Callable[..., Server],
                                                        api_key: Callable[..., str]) -> None:
    """1,500 followers of one run from one anonymous visitor made /healthz take up to 7 s: each client now follows
    at most ``max_followers`` streams at once (429 past them, in each route's error shape), and the others
    still stream to the end; an anonymous visitor's resumes count in the public rate limit."""
    import contextlib

    server = serve(max_followers=3, public_rate_per_minute=8)
    secret = api_key()
    with keyed(server, secret) as client, contextlib.ExitStack() as streams:
        run_id, listener = _running(client, new_conversation(client, "slow"), "/v1/conversations/{}/messages")
        followers = [streams.enter_context(client.stream("GET", f"/v1/runs/{run_id}/events")) for _ in range(3)]
        assert [f.status_code for f in followers] == [200] * 3
        refused = client.get(f"/v1/runs/{run_id}/events")
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "too_many_streams", refused.text
        assert "3 per client" in refused.json()["error"]["message"] and refused.headers["retry-after"]
        with keyed(server, api_key("other", scope="admin")) as admin, \
                admin.stream("GET", f"/v1/runs/{run_id}/events") as theirs:  # another client has its own share
            assert theirs.status_code == 200
        ends = [blocks(f)[-1]["event"] for f in followers]
        listener.join(10)
    assert ends == ["run_finished"] * 3
    # every follower's place is freed with its stream: as its response ends on the server, which may be just
    # after the client read the last event (CI read one place still held once)
    deadline = time.monotonic() + 5
    while client_follows(server) != {}:
        assert time.monotonic() < deadline, client_follows(server)
        time.sleep(0.02)
    with keyed(server, secret) as client:  # so the client may follow again
        assert client.get(f"/v1/runs/{run_id}/events", params={"after": -1}).status_code == 200

    # The web chat's resume: the same cap for an anonymous visitor (by address), and each resume is rate-limited.
    with httpx.Client(base_url=server.url, timeout=30) as http, contextlib.ExitStack() as streams:
        mine = {"X-Chat-Session": http.post("/chat/api/session").json()["token"]}  # 1 of the 8 a minute
        conversation = http.post("/chat/api/conversations", headers=mine, json={"agent": "slow"}).json()["id"]  # 2
        http.headers.update(mine)
        run_id, listener = _running(http, conversation, "/chat/api/conversations/{}/messages")  # 3
        followed = [streams.enter_context(http.stream("GET", f"/chat/api/runs/{run_id}/events")) for _ in range(3)]
        assert [f.status_code for f in followed] == [200] * 3  # 6
        capped = http.get(f"/chat/api/runs/{run_id}/events")  # 7
        assert capped.status_code == 429 and capped.json()["error"]["type"] == "too_many_streams"
        assert http.get(f"/chat/api/runs/{run_id}/events").json()["error"]["type"] == "too_many_streams"  # 8
        limited = http.get(f"/chat/api/runs/{run_id}/events")  # the 9th: the minute's budget is spent
        assert limited.status_code == 429 and "a minute per client" in limited.json()["error"]["message"]
        assert all(blocks(f)[-1]["event"] == "run_finished" for f in followed)
        listener.join(10)


def client_follows(server: Server) -> dict[str, int]:
    return dict(server.state.followers)


def test_a_follower_reads_only_new_events_each_time(serve: Callable[..., Server], api_key: Callable[..., str],
                                                    monkeypatch) -> None:
    """Each follower re-read the run's whole trace every 0.2 s; it now asks the store only for the events after
    the last one it sent, so each stored event is read once however long the run."""
    server = serve()
    store = server.state.store
    reads: list[tuple[int, list[int]]] = []
    get_events = store.get_events

    def counted(run_id: str, *after: int) -> list[dict[str, Any]]:
        events = get_events(run_id, *after)
        if run_id == followed:
            reads.append((after[0] if after else -1, [e["seq"] for e in events]))
        return events

    with keyed(server, api_key()) as client:
        followed = ""
        run_id, listener = _running(client, new_conversation(client, "slow"), "/v1/conversations/{}/messages")
        followed = run_id
        monkeypatch.setattr(store, "get_events", counted)
        with client.stream("GET", f"/v1/runs/{run_id}/events", params={"after": -1}) as resumed:
            got = [int(b["id"].split(":")[1]) for b in blocks(resumed)]
        listener.join(10)
    polls = reads[1:]  # the first read: follow.over's look for the run's end
    assert len(polls) >= 3, reads  # the run went on for a while: it was polled
    seen = [seq for _, seqs in polls for seq in seqs]
    assert seen == got == sorted(set(got)), reads  # each event read once, none again


def test_a_followed_stream_ends_within_seconds_of_its_session_being_signed_out(serve: Callable[..., Server]) -> None:
    """A stream is one request that goes on: its session was checked at its start only, so a browser signed out
    (or its session revoked by an admin) kept receiving the run's events for as long as the run went on. It ends
    within a few seconds (``follow.RECHECK``: 2) with an error event saying why, and following again is refused."""
    from halguru_server.identity import accounts, websessions

    server = serve()
    store = server.state.store
    user = accounts.create_user(store, "ann@example.com", role="user")

    def followed(revoke: Callable[[str, dict[str, Any]], None]) -> tuple[list[dict[str, Any]], float]:
        secret, session = websessions.issue(store, user["id"], server.state.settings.auth)
        run_id = f"run_{time.time_ns():x}"[:30]
        store.start_run(run_id, f"conv_{run_id[4:]}", "echo", "scripted", "a long job", owner=f"user:{user['id']}")
        # no event comes while the run goes on: a stream still open 5 s on is a ReadTimeout
        with httpx.Client(base_url=server.url, cookies={websessions.COOKIE: secret},
                          timeout=httpx.Timeout(30, read=5)) as http, \
                http.stream("GET", f"/chat/api/runs/{run_id}/events", params={"after": -1}) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines).startswith("retry:")  # following: the run goes on (its lease: 30 s)
            revoke(secret, session)
            signed_out = time.monotonic()
            got = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
            took = time.monotonic() - signed_out
            again = http.get(f"/chat/api/runs/{run_id}/events")
        assert again.status_code in (401, 404), again.text  # the cookie is no one's now
        return got, took

    def sign_out(secret: str, session: dict[str, Any]) -> None:  # the page's "Sign out" button
        with httpx.Client(base_url=server.url, cookies={websessions.COOKIE: secret}) as browser:
            out = browser.post("/auth/logout", data={"csrf_token": session["csrf"]}, headers={"Origin": server.url})
            assert out.status_code in (302, 303), out.text

    got, took = followed(sign_out)
    assert [(e["type"], e["kind"]) for e in got] == [("error", "signed_out")], got
    assert "your session ended" in got[0]["message"] and took < 5, took
    got, took = followed(lambda _secret, session: store.revoke_web_sessions(None, [session["id_hash"]]))  # an admin
    assert [e["kind"] for e in got] == ["signed_out"] and took < 5, took


def test_a_followed_stream_ends_within_seconds_of_its_api_key_being_revoked(serve: Callable[..., Server]) -> None:
    """A revoked key was refused at its next request, but a stream it had opened kept delivering the run's events
    for as long as the run went on. It ends within a few seconds with an error event saying why."""
    from halguru_server.keys import create_key

    server = serve()
    store = server.state.store
    key, secret = create_key(store, "laptop", None, None, "developer")
    run_id = f"run_{time.time_ns():x}"[:30]
    store.start_run(run_id, f"conv_{run_id[4:]}", "echo", "scripted", "a long job", owner=f"key:{key.id}")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"},
                      timeout=httpx.Timeout(30, read=5)) as http, \
            http.stream("GET", f"/v1/runs/{run_id}/events", params={"after": -1}) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # following: the run goes on (its lease: 30 s)
        store.revoke_keys([key.id])  # `halguru keys revoke`, the console, or DELETE /v1/keys/ID
        revoked = time.monotonic()
        got = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        took = time.monotonic() - revoked
        again = http.get(f"/v1/runs/{run_id}/events")
    assert [(e["type"], e["kind"]) for e in got] == [("error", "signed_out")], got
    assert "your API key was revoked" in got[0]["message"] and took < 5, took
    assert again.status_code == 401, again.text
