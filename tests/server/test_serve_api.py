"""The /v1 REST API on a real uvicorn: agents, conversations, messages (JSON and SSE), runs, errors."""

from __future__ import annotations

import json

import httpx


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
    return events


def new_conversation(client: httpx.Client, agent: str = "echo") -> str:
    response = client.post("/v1/conversations", json={"agent": agent})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_agents_are_listed_and_described(client: httpx.Client) -> None:
    names = [a["name"] for a in client.get("/v1/agents").json()["data"]]
    assert names == ["echo", "private", "slow"]
    echo = client.get("/v1/agents/echo").json()
    assert echo == {"name": "echo", "description": "echoes", "model": "scripted", "tools": [], "web_chat": "public",
                    "version": None}  # None: a folder given to `halguru serve`, not a published version
    assert client.get("/v1/agents/private").json()["web_chat"] == "key"  # the documented default


def test_conversation_lifecycle_with_answers_whole(client: httpx.Client) -> None:
    conv = new_conversation(client)
    first = client.post(f"/v1/conversations/{conv}/messages", json={"content": "hello"})
    assert first.status_code == 200
    body = first.json()
    assert body["output"] == "You said: hello" and body["status"] == "ok" and body["conversation_id"] == conv
    client.post(f"/v1/conversations/{conv}/messages", json={"content": "again"})
    messages = client.get(f"/v1/conversations/{conv}/messages").json()["data"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello"), ("assistant", "You said: hello"), ("user", "again"), ("assistant", "You said: again")]
    assert client.get(f"/v1/conversations/{conv}").json()["messages"] == 4
    page = client.get(f"/v1/conversations/{conv}/messages", params={"limit": 3}).json()  # ?limit was ignored
    rest = client.get(f"/v1/conversations/{conv}/messages", params={"limit": 3, "cursor": page["next_cursor"]}).json()
    assert [m["content"] for m in page["data"] + rest["data"]] == [m["content"] for m in messages]
    assert len(page["data"]) == 3 and rest["next_cursor"] is None
    for bad in ({"limit": -1}, {"limit": 0}, {"limit": "x"}, {"cursor": "zzz"}):
        assert client.get(f"/v1/conversations/{conv}/messages", params=bad).status_code in (400, 422), bad
    run = client.get(f"/v1/runs/{body['run_id']}").json()
    assert run["status"] == "ok" and run["input"] == "hello"
    assert next(e["type"] for e in run["events"]) == "run_started" and run["events"][-1]["type"] == "run_finished"
    assert client.delete(f"/v1/conversations/{conv}").status_code == 204
    assert client.get(f"/v1/conversations/{conv}").status_code == 404
    assert client.get(f"/v1/runs/{body['run_id']}").status_code == 404


def test_streamed_answer_is_typed_events_and_request_id_is_in_the_trace(client: httpx.Client) -> None:
    conv = new_conversation(client)
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "stream me", "stream": True},
                       headers={"X-Request-ID": "req-abc-123"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"] == "req-abc-123"
        events = sse_events(response)
    kinds = [k for k, _ in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and "token" in kinds
    assert all(k == d["type"] for k, d in events)
    assert "".join(d["text"] for k, d in events if k == "token") == "You said: stream me"
    run_id = events[-1][1]["run_id"]
    stored = client.get(f"/v1/runs/{run_id}").json()["events"]
    assert stored[0]["metadata"] == {"request_id": "req-abc-123"}


def test_accept_header_also_selects_streaming(client: httpx.Client) -> None:
    conv = new_conversation(client)
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "x"},
                       headers={"Accept": "text/event-stream"}) as response:
        assert sse_events(response)[-1][1]["output"] == "You said: x"


def test_conversations_are_paginated(client: httpx.Client) -> None:
    created = [new_conversation(client) for _ in range(5)]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/conversations", params=params).json()
        assert len(page["data"]) <= 2
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(created)
    assert client.get("/v1/conversations", params={"agent": "private"}).json()["data"] == []
    bad = client.get("/v1/conversations", params={"cursor": "garbage!"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]["message"]


def _ids(page: dict) -> list[str]:
    return [c["id"] for c in page["data"]]


def test_a_conversation_bumped_or_created_between_pages_is_not_repeated(client: httpx.Client) -> None:
    """The tester's sequence: page 1, a message into a later conversation, page 2. An offset cursor repeated the
    last item of page 1 and never showed the bumped one; the keyset cursor shows each at most once per pass,
    and the bumped one heads the next pass."""
    created = [new_conversation(client) for _ in range(6)][::-1]  # newest first, as listed
    first = client.get("/v1/conversations", params={"limit": 3}).json()
    assert _ids(first) == created[:3]
    assert client.post(f"/v1/conversations/{created[5]}/messages", json={"content": "bump"}).status_code == 200
    second = client.get("/v1/conversations", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    assert _ids(second) == created[3:5] and second["next_cursor"] is None
    assert _ids(client.get("/v1/conversations", params={"limit": 3}).json()) == [created[5], *created[:2]]
    fresh = client.get("/v1/conversations", params={"limit": 2}).json()
    new_conversation(client), new_conversation(client)
    after = client.get("/v1/conversations", params={"limit": 2, "cursor": fresh["next_cursor"]}).json()
    assert _ids(after) == created[1:3]  # two new ones at the head shift nothing


def test_bad_input_gets_clear_json_errors(client: httpx.Client) -> None:
    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
        return body["error"]["message"]

    conv = new_conversation(client)
    raw = {"Content-Type": "application/json"}
    assert "not valid JSON" in error(client.post("/v1/conversations", content=b"{nope", headers=raw), 400)
    assert "agent" in error(client.post("/v1/conversations", json={"agent": 5}), 422)
    assert "content" in error(client.post(f"/v1/conversations/{conv}/messages", json={}), 422)
    assert "no agent 'ghost'" in error(client.post("/v1/conversations", json={"agent": "ghost"}), 404)
    assert "no conversation" in error(client.post("/v1/conversations/conv_nope/messages", json={"content": "x"}), 404)
    assert "no run" in error(client.get("/v1/runs/run_%25"), 404)
    assert "limit is 16000" in error(client.post(f"/v1/conversations/{conv}/messages",
                                                 json={"content": "x" * 16_001}), 413)
    assert "larger than" in error(client.post("/v1/conversations", content=b"x" * 2_000_000, headers=raw), 413)
    assert "/swagger" in error(client.get("/v1/nothing"), 404)
    assert error(client.delete("/v1/agents"), 405)


def test_a_405_allows_every_method_its_path_answers(client: httpx.Client) -> None:
    """GET and POST of one path are separate routes: DELETE /v1/conversations said `Allow: POST`, and a client
    following it never learnt it could list them."""
    conv = new_conversation(client)
    for method, path, allow in (("DELETE", "/v1/conversations", "GET, POST"), ("PUT", "/v1/jobs", "GET, POST"),
                                ("PUT", f"/v1/conversations/{conv}", "DELETE, GET, PATCH"),
                                ("DELETE", "/v1/agents", "GET"), ("GET", "/v1/chat/completions", "POST"),
                                ("POST", "/chat/static/chat.js", "GET, HEAD")):  # a mounted app's own Allow
        response = client.request(method, path)
        assert (response.status_code, response.headers["allow"]) == (405, allow), (method, path)
        for other in allow.split(", "):  # and each method it lists is answered
            assert client.request(other, path).status_code != 405, (other, path)


def test_a_whitespace_only_message_is_a_422_and_starts_no_run(client: httpx.Client) -> None:
    """As `halguru run my-agent "   "` refuses it: min_length counts spaces, so "   " once ran the agent."""
    conv = new_conversation(client)
    for blank in ("   ", "\n\t ", "\u3000", "\u200b\u200b", "\x00", "\u202e \u2066"):  # invisible ones too
        response = client.post(f"/v1/conversations/{conv}/messages", json={"content": blank})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"] == ("content: the message is empty or only whitespace (or "
                                                       "invisible characters); give the agent something to answer")
    assert client.get(f"/v1/conversations/{conv}/messages").json()["data"] == []
    assert client.get("/v1/runs", params={"conversation_id": conv}).json()["data"] == []
    padded = client.post(f"/v1/conversations/{conv}/messages", json={"content": "  hi  "})
    assert padded.status_code == 200 and padded.json()["output"] == "You said:   hi  "


def test_health_readiness_metrics_and_status(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok" and ready["components"]["store"]["ok"]
    conv = new_conversation(client)
    client.post(f"/v1/conversations/{conv}/messages", json={"content": "count me"})
    metrics = client.get("/metrics").text
    assert 'halguru_runs_total{agent="echo",status="ok"} 1.0' in metrics
    assert 'halguru_http_requests_total{method="POST",route="/v1/conversations",status="201"} 1.0' in metrics
    assert 'halguru_tokens_total{agent="echo",direction="out"}' in metrics
    assert "halguru_http_request_duration_seconds_bucket" in metrics
    page = client.get("/status")
    assert "text/html" in page.headers["content-type"] and "model:scripted" in page.text and "echo" in page.text


def test_swagger_and_openapi_are_served(client: httpx.Client) -> None:
    assert "swagger-ui" in client.get("/swagger").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/agents", "/v1/conversations", "/v1/conversations/{conversation_id}/messages", "/v1/runs/{run_id}",
            "/v1/chat/completions", "/v1/models"} <= set(paths)


def test_openapi_says_which_routes_take_a_key_so_swagger_can_send_one(client: httpx.Client) -> None:
    """/openapi.json declared no security scheme: /swagger had no Authorize button, so no guarded route could be
    tried from it, and generated clients did not know a key was needed."""
    document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer") and "halguru keys create" in scheme["description"]
    paths = document["paths"]
    assert paths["/v1/agents"]["get"]["security"] == [{"bearer": []}]
    assert paths["/v1/chat/completions"]["post"]["security"] == [{"bearer": []}]
    assert paths["/chat/api/conversations"]["get"]["security"] == [{}, {"bearer": []}]  # web chat visitors too
    public = [(path, method) for path, item in paths.items() for method, operation in item.items()
              if "security" not in operation]
    assert {("/healthz", "get"), ("/readyz", "get")} <= set(public)  # what a load balancer calls: no key
    assert all(not path.startswith(("/v1/", "/admin/")) for path, _ in public), public


def test_a_second_message_while_one_is_answered_is_a_409_and_then_goes_through(client: httpx.Client) -> None:
    """Two turns at once in one conversation read the same history and neither answer saw the other."""
    conv = new_conversation(client, "slow")
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "first", "stream": True}) \
            as first:
        lines = first.iter_lines()
        next(line for line in lines if line.startswith("event: token"))  # it is answering
        second = client.post(f"/v1/conversations/{conv}/messages", json={"content": "second"})
        assert second.status_code == 409 and second.headers["retry-after"] == "2", second.text
        assert second.json()["error"]["type"] == "conversation_busy"
        assert "is answering another message" in second.json()["error"]["message"]
        # streamed alike: a 409 with Retry-After, not a 200 whose one event is the error
        streamed = client.post(f"/v1/conversations/{conv}/messages", json={"content": "second", "stream": True})
        assert streamed.status_code == 409 and streamed.headers["retry-after"] == "2", streamed.text
        assert streamed.json()["error"]["type"] == "conversation_busy"
        for _ in lines:  # the first one finishes
            pass
    again = client.post(f"/v1/conversations/{conv}/messages", json={"content": "second"})
    assert again.status_code == 200, again.text
    history = [m["content"] for m in client.get(f"/v1/conversations/{conv}/messages").json()["data"]]
    assert history[0] == "first" and history[2] == "second" and len(history) == 4


def test_a_stream_refused_as_its_queued_run_starts_says_when_to_retry(serve, api_key) -> None:
    """Another replica's message began answering in the conversation while this stream's run waited for the
    model (its 200 was sent): the stream's one event is the refusal, and it said neither that nor when to send
    the message again, as a 409's Retry-After does."""
    from halguru.store import open_store

    server = serve(concurrency=1)  # one run of the model at a time: the second waits in its queue
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as client:
        other, conv = new_conversation(client, "slow"), new_conversation(client, "slow")
        with client.stream("POST", f"/v1/conversations/{other}/messages", json={"content": "x", "stream": True}) \
                as holding, client.stream("POST", f"/v1/conversations/{conv}/messages",
                                          json={"content": "mine", "stream": True}) as queued:
            assert queued.status_code == 200  # waiting for the model
            # ...and now another replica starts answering in that conversation
            open_store().start_run("run_elsewhere", conv, "slow", "scripted", "theirs", existing=True)
            for _ in holding.iter_lines():
                pass
            events = sse_events(queued)
    assert [kind for kind, _ in events] == ["error"]
    error = events[0][1]
    assert error["kind"] == "conversation_busy" and error["fatal"] and error["retry_after"] == 2
    assert open_store().get_messages(conv) == []  # nothing of the refused message was stored


def test_stream_must_be_a_boolean_and_text_parts_strings(client: httpx.Client) -> None:
    """``stream: "true"`` and ``1`` were taken as true here while the OpenAI endpoint refused them; a text part
    whose ``text`` was an object was echoed back as its repr."""
    conv = new_conversation(client)
    for value in ("true", 1):
        refused = client.post(f"/v1/conversations/{conv}/messages", json={"content": "hi", "stream": value})
        assert refused.status_code == 422, refused.text
    part = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "user", "content": [{"type": "text", "text": {"a": 1}}]}]})
    assert part.status_code == 400 and "'text' must be a string" in part.json()["error"]["message"]


def test_a_long_conversation_says_how_many_messages_it_holds_as_fast_as_a_short_one(client) -> None:
    # the count read (and built) every message: 5,000 took 100-400 ms here, for one number
    import time

    store = client.server.state.store
    short = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    long = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    store.append_message(short, "user", "hi")
    with store._tx() as conn:
        conn.executemany("INSERT INTO messages (conversation_id, seq, role, content, created) VALUES (?, ?, ?, ?, ?)",
                         [(long, i, "user" if i % 2 == 0 else "assistant", f"message {i} " * 20, time.time())
                          for i in range(5000)])

    def fastest_ms(url: str) -> float:
        times = []
        for _ in range(7):
            started = time.perf_counter()
            assert client.get(url).status_code == 200
            times.append((time.perf_counter() - started) * 1000)
        return min(times)

    assert client.get(f"/v1/conversations/{long}").json()["messages"] == 5000
    assert client.get(f"/v1/conversations/{short}").json()["messages"] == 1
    quick, slow = fastest_ms(f"/v1/conversations/{short}"), fastest_ms(f"/v1/conversations/{long}")
    assert slow < 3 * quick + 5, (quick, slow)


def test_a_long_history_comes_a_bounded_page_at_a_time(client) -> None:
    # without ?limit the whole history came in one response: a 30 MB one read 4x at once held up everyone
    import time

    from halguru.client import Client

    conv = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
    with client.server.state.store._tx() as conn:
        conn.executemany("INSERT INTO messages (conversation_id, seq, role, content, created) VALUES (?, ?, ?, ?, ?)",
                         [(conv, i, "user" if i % 2 == 0 else "assistant", f"m{i}", time.time())
                          for i in range(1234)])
    url = f"/v1/conversations/{conv}/messages"
    first = client.get(url).json()
    assert [m["content"] for m in first["data"]] == [f"m{i}" for i in range(100)]  # the default page
    second = client.get(url, params={"cursor": first["next_cursor"]}).json()
    assert [m["content"] for m in second["data"]] == [f"m{i}" for i in range(100, 200)]
    assert client.get(url, params={"limit": 1001}).status_code == 422  # at most 1000 at once
    last = client.get(url, params={"limit": 1000, "cursor": first["next_cursor"]}).json()
    assert len(last["data"]) == 1000 and last["next_cursor"] is not None
    end = client.get(url, params={"limit": 1000, "cursor": last["next_cursor"]}).json()
    assert [m["content"] for m in end["data"]] == [f"m{i}" for i in range(1100, 1234)] and end["next_cursor"] is None
    key = client.headers["Authorization"].removeprefix("Bearer ")
    with Client(client.server.url, key) as hg:  # the Python client pages through to the end
        assert [m.content for m in hg.messages(conv)] == [f"m{i}" for i in range(1234)]
