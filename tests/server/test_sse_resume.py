"""SSE streams resumable on another replica (two apps on one store, each on its own real uvicorn): event ids,
``GET /v1/runs/{id}/events`` with ``Last-Event-ID`` while the run goes on elsewhere, 204 once it is over, and the
replica affinity header and cookie."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx

from tests.server.conftest import Server
from tests.server.test_serve_api import new_conversation


def blocks(response: httpx.Response) -> list[dict[str, Any]]:
    """Each SSE block as {id, event, data} (comments and retry-only blocks left out)."""
    out, block = [], {}
    for line in response.iter_lines():
        if not line:
            if "event" in block:
                out.append(block)
            block = {}
        elif line.startswith(("id: ", "event: ")):
            key, _, value = line.partition(": ")
            block[key] = value
        elif line.startswith("data: "):
            block["data"] = json.loads(line[6:])
    return out


def keyed(server: Server, secret: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def test_a_stream_cut_on_one_replica_resumes_on_another(serve: Callable[..., Server],
                                                          api_key: Callable[..., str]) -> None:
    secret = api_key()
    one, two = keyed(serve(), secret), keyed(serve(), secret)
    conv = new_conversation(one, "slow")
    live: list[dict[str, Any]] = []
    first_token = threading.Event()

    def listen() -> None:  # the run's own stream stays open on replica one (closing it would stop the run)
        with one.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "go", "stream": True}) as r:
            for block in blocks(r):
                live.append(block)
                if block["event"] == "token":
                    first_token.set()

    listener = threading.Thread(target=listen)
    listener.start()
    assert first_token.wait(10)
    run_id, _ = live[0]["id"].split(":")
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

