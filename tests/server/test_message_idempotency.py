"""``Idempotency-Key`` on POST /v1/conversations/{id}/messages, on a real uvicorn over SQLite and PostgreSQL: a retry
gets the first run and stores no second turn; a repeat while the first runs is 409; another message under the key
is 422; a first attempt refused before its run started (503) leaves the key usable; keys go with their
conversation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from halguru.store import open_store
from tests.server.test_serve_api import new_conversation, sse_events


@pytest.fixture
def client(backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, serve: Callable[..., Any],
           api_key: Callable[..., str]) -> Iterator[httpx.Client]:
    """A client with a key, on a server whose store is SQLite (HALGURU_HOME) or the session's PostgreSQL database
    (emptied; an unreachable server fails the test)."""
    if backend == "postgres":
        from halguru.config import reset_settings
        from tests.conftest import _empty_postgres

        url = request.getfixturevalue("postgres_url")
        _empty_postgres(url)
        monkeypatch.setenv("HALGURU_DATABASE_URL", url)
        reset_settings()
    server = serve()
    assert type(server.state.store).__name__ == ("PostgresStore" if backend == "postgres" else "SQLiteStore")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {api_key()}"}, timeout=30) as c:
        c.server = server  # type: ignore[attr-defined]
        yield c


def post(client: httpx.Client, conv: str, content: str, key: str | bytes | None, **body: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(f"/v1/conversations/{conv}/messages", json={"content": content, **body}, headers=headers)


def turns(client: httpx.Client, conv: str) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in client.get(f"/v1/conversations/{conv}/messages").json()["data"]]


def runs_of(conv: str) -> list[dict[str, Any]]:
    return [dict(r) for r in open_store().list_runs(conversation_id=conv)]


def one_line_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and "\n" not in error["message"], error
    return str(error["message"])


def test_a_retry_after_the_first_finished_gets_the_same_run_and_stores_one_turn(client: httpx.Client) -> None:
    conv = new_conversation(client)
    first = post(client, conv, "hello", "order-42")
    assert first.status_code == 200, first.text
    again = post(client, conv, "hello", "order-42")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()  # run_id, output, status, usage, tool calls, duration: the first run's
    assert first.json()["output"] == "You said: hello" and first.json()["status"] == "ok"
    assert turns(client, conv) == [("user", "hello"), ("assistant", "You said: hello")]
    assert len(runs_of(conv)) == 1
    # Asking for a stream: the first run's stored events replayed (tokens are not stored), nothing run again.
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "hello", "stream": True},
                       headers={"Idempotency-Key": "order-42"}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[0][0] == "run_started" and events[-1][0] == "run_finished"
    assert {d["run_id"] for _, d in events} == {first.json()["run_id"]}
    assert events[-1][1]["output"] == "You said: hello"
    assert len(runs_of(conv)) == 1 and len(turns(client, conv)) == 2
    # The key is the caller's in this conversation: the same key elsewhere, or no key, is a new message.
    other = new_conversation(client)
    assert post(client, other, "hello", "order-42").json()["run_id"] != first.json()["run_id"]
    post(client, conv, "hello", None)
    assert len(turns(client, conv)) == 4


def test_a_repeat_while_the_first_is_running_is_409_then_gets_its_run(client: httpx.Client) -> None:
    conv = new_conversation(client, "slow")
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "go", "stream": True},
                       headers={"Idempotency-Key": "k-slow"}) as first:
        lines = first.iter_lines()  # kept: a dropped iterator closes the stream
        while next(lines) != "event: token":  # the run has started
            pass
        repeat = post(client, conv, "go", "k-slow")
        message = one_line_error(repeat, 409, "idempotency_key_in_progress")
        assert "still in progress" in message and repeat.headers["retry-after"] == "1"
        events = [line for line in lines if line.startswith("data: ")]
    assert '"run_finished"' in events[-1]
    [run] = runs_of(conv)
    assert run["status"] == "ok"
    after = post(client, conv, "go", "k-slow")
    assert after.status_code == 200 and after.json()["run_id"] == run["id"]
    assert after.json()["output"] == run["output"] and run["output"].endswith("word39")
    assert [role for role, _ in turns(client, conv)] == ["user", "assistant"]


def test_the_same_key_with_another_message_is_422(client: httpx.Client) -> None:
    conv = new_conversation(client)
    assert post(client, conv, "first", "k1").status_code == 200
    message = one_line_error(post(client, conv, "second", "k1"), 422, "idempotency_key_reused")
    assert "another message" in message
    assert turns(client, conv) == [("user", "first"), ("assistant", "You said: first")]


def test_a_first_attempt_refused_with_503_leaves_the_key_usable(client: httpx.Client) -> None:
    client.server.state.settings.concurrency = 1  # type: ignore[attr-defined]
    client.server.state.gate.queue_size = 0  # type: ignore[attr-defined]
    busy, conv = new_conversation(client, "slow"), new_conversation(client, "slow")
    with client.stream("POST", f"/v1/conversations/{busy}/messages", json={"content": "a", "stream": True}) as a:
        lines = a.iter_lines()
        while next(lines) != "event: run_started":
            pass
        full = post(client, conv, "b", "k-503")
        assert full.status_code == 503 and full.json()["error"]["type"] == "queue_full"
    deadline = time.monotonic() + 10  # the closed stream's run is cancelled and frees the model
    while (retry := post(client, conv, "b", "k-503")).status_code == 503:
        assert time.monotonic() < deadline, retry.text
        time.sleep(0.05)
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "ok" and [r["id"] for r in runs_of(conv)] == [retry.json()["run_id"]]
    assert post(client, conv, "b", "k-503").json()["run_id"] == retry.json()["run_id"]


def test_bad_keys_are_400_with_one_line(client: httpx.Client) -> None:
    conv = new_conversation(client)
    for key in ("", "x" * 201, b"caf\xe9"):
        message = one_line_error(post(client, conv, "hi", key), 400, "invalid_idempotency_key")
        assert message.startswith("Idempotency-Key ") and "1 to 200 printable ASCII characters" in message
    assert post(client, conv, "hi", "x" * 200).status_code == 200
    assert post(client, conv, "hi", "a key with spaces ~!").status_code == 200
    assert runs_of(conv) and len(runs_of(conv)) == 2


def test_keys_go_with_their_conversation(client: httpx.Client) -> None:
    conv = new_conversation(client)
    run_id = post(client, conv, "hello", "k-del").json()["run_id"]
    store = open_store()
    assert store._rows("SELECT run_id FROM message_keys") == [{"run_id": run_id}]  # type: ignore[attr-defined]
    assert client.delete(f"/v1/conversations/{conv}").status_code == 204
    assert store._rows("SELECT * FROM message_keys") == []  # type: ignore[attr-defined]
    assert post(client, conv, "hello", "k-del").status_code == 404


def test_the_endpoint_documents_the_header(client: httpx.Client) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/conversations/{conversation_id}/messages"]["post"]
    [header] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key" and "409" in header["description"]
    assert "409" in operation["responses"]


def retry_until_answered(client: httpx.Client, conv: str, content: str, key: str) -> httpx.Response:
    """The same keyed message again until the first one has answered (409 while it runs)."""
    deadline = time.monotonic() + 20
    while (retry := post(client, conv, content, key)).status_code == 409:
        assert time.monotonic() < deadline, retry.text
        time.sleep(0.1)
    return retry


def ended(conversation: str) -> dict[str, Any]:
    """The conversation's run once it is no longer running."""
    deadline = time.monotonic() + 20
    while not runs_of(conversation) or runs_of(conversation)[0]["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return runs_of(conversation)[0]


def test_a_keyed_run_goes_on_when_its_client_times_out_so_the_retry_gets_the_whole_answer(
        client: httpx.Client) -> None:
    """The case the key is for: the client gives up waiting (here after 0.5 s of a 2 s answer) and sends again.
    Without a key the run is cancelled with its client; with one it runs to its end and the retry gets it."""
    conv = new_conversation(client, "slow")
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/v1/conversations/{conv}/messages", json={"content": "go"},
                    headers={"Idempotency-Key": "k-timeout"}, timeout=0.5)
    retry = retry_until_answered(client, conv, "go", "k-timeout")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "ok" and retry.json()["output"].endswith("word39")
    assert [role for role, _ in turns(client, conv)] == ["user", "assistant"]
    plain = new_conversation(client, "slow")  # without a key: cancelled with its client, as before
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/v1/conversations/{plain}/messages", json={"content": "go"}, timeout=0.5)
    assert ended(plain)["status"] == "cancelled"


def test_a_keyed_stream_whose_client_drops_runs_on_so_the_retry_gets_the_whole_answer(
        client: httpx.Client) -> None:
    """A keyed stream dropped mid-answer was cancelled with its client, and every retry under the key got
    ``cancelled`` for its 24 hours. It now runs to its end as a keyed whole answer does; a plain stream is still
    cancelled with its client."""
    conv = new_conversation(client, "slow")
    with client.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": "go", "stream": True},
                       headers={"Idempotency-Key": "k-stream"}) as first:
        lines = first.iter_lines()
        next(line for line in lines if line.startswith("event: token"))  # answering; then the client drops
    retry = retry_until_answered(client, conv, "go", "k-stream")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "ok" and retry.json()["output"].endswith("word39")
    state = client.server.state  # type: ignore[attr-defined]
    assert state.gate.queues[state.agents["slow"].model].active == 0  # its queue place freed as it ended
    plain = new_conversation(client, "slow")
    with client.stream("POST", f"/v1/conversations/{plain}/messages", json={"content": "go", "stream": True}) as s:
        next(line for line in s.iter_lines() if line.startswith("event: token"))
    assert ended(plain)["status"] == "cancelled"


def test_a_streamed_attempt_whose_client_left_before_the_answer_began_leaves_the_key_usable(
        client: httpx.Client) -> None:
    """A keyed, streamed message whose client is gone by the time the response starts: under ASGI spec 2.4 the
    server's send raises OSError at the response's start, so the response never asks for its first event and the
    run never starts; the retry under the same key runs at once (it was a 409 until the claim expired, 10 minutes
    later). Sent to the app on uvicorn's own loop as such a server would (uvicorn 0.55 speaks 2.3, where the body
    starts anyway and its end releases the key)."""
    import asyncio
    import contextlib
    import json

    conv = new_conversation(client)
    server = client.server  # type: ignore[attr-defined]
    body = json.dumps({"content": "hello", "stream": True}).encode()
    headers = [(b"host", b"127.0.0.1"), (b"authorization", client.headers["Authorization"].encode()),
               (b"idempotency-key", b"k-gone"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    path = f"/v1/conversations/{conv}/messages"
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        raise OSError("the client is gone")

    loop = server.server.servers[0].get_loop()
    with contextlib.suppress(Exception):  # Starlette's ClientDisconnect, as the server would see it
        asyncio.run_coroutine_threadsafe(server.app(scope, receive, send), loop).result(timeout=30)
    assert [m["type"] for m in sent] == ["http.response.start"]  # it never answered
    retry = post(client, conv, "hello", "k-gone")
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "ok" and retry.json()["output"] == "You said: hello"
    assert [r["id"] for r in runs_of(conv)] == [retry.json()["run_id"]]
    assert post(client, conv, "hello", "k-gone").json()["run_id"] == retry.json()["run_id"]


def test_a_retry_of_a_plain_run_a_shutdown_cut_runs_the_message_again(client: httpx.Client) -> None:
    """A plain agent's run cut by a server shutdown cannot be resumed (only team and workflow runs have
    checkpoints): its key answered 409 "resume it", and the resume 409 "not a team or workflow run", for a day.
    The retry now answers the message."""
    conv = new_conversation(client)
    first = post(client, conv, "hello", "order-7").json()
    store = client.server.state.store  # type: ignore[attr-defined]
    with store._tx() as conn:  # as a shutdown leaves it
        conn.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", (first["run_id"],))
    again = post(client, conv, "hello", "order-7")
    assert again.status_code == 200, again.text
    assert again.json()["run_id"] != first["run_id"] and again.json()["output"] == "You said: hello"
    assert post(client, conv, "hello", "order-7").json()["run_id"] == again.json()["run_id"]  # once
