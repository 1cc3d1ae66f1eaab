"""halguru.client against a real server: non-stream and stream (typed events), 503 retries honouring
Retry-After, conversation listing, errors, and the async client."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from halguru.agents.events import RunFinished, RunStarted, Token
from halguru.api_schemas import RunOut
from halguru.client import AsyncClient, AuthError, Client, NotFound, StreamError, Unavailable
from tests.server.conftest import Server

Serve = Callable[..., Server]


def test_send_stream_and_list_conversations(serve: Serve, api_key: Callable[..., str]) -> None:
    server = serve()
    with Client(server.url, api_key()) as hg:
        assert {a.name for a in hg.agents()} >= {"echo", "slow"}
        chat = hg.new_conversation("echo", title="first")
        answer = hg.send(chat.id, "hello")
        assert isinstance(answer, RunOut) and answer.status == "ok" and answer.conversation_id == chat.id
        run = hg.run(answer.run_id)
        assert run.status == "ok" and run.output == answer.output and run.events[-1]["type"] == "run_finished"
        events = list(hg.stream(chat.id, "again"))
        assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
        assert events[-1].status == "ok" and events[-1].run_id == events[0].run_id
        assert [m.role for m in hg.messages(chat.id)] == ["user", "assistant", "user", "assistant"]
        others = [hg.new_conversation("echo", title=f"c{i}").id for i in range(3)]
        page = hg.conversations(agent="echo", limit=2)
        assert [c.id for c in page.data] == others[::-1][:2] and page.next_cursor
        assert [c.id for c in hg.iter_conversations("echo")] == [*others[::-1], chat.id]
        with pytest.raises(NotFound) as missing:
            hg.messages("conv_nope")
        assert missing.value.status == 404 and missing.value.type == "not_found"
        tokens = [e for e in hg.stream(hg.new_conversation("slow").id, "go") if isinstance(e, Token)]
        assert len(tokens) > 10  # streamed token by token
    with Client(server.url, "hg_wrong") as bad, pytest.raises(AuthError):
        bad.agents()


def _occupy(url: str, key: str, conversation: str, started: threading.Event) -> None:
    """Stream an answer of the slow agent to its end (it holds the model's only slot for about 2 s)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http, \
            http.stream("POST", f"/v1/conversations/{conversation}/messages",
                        json={"content": "x", "stream": True}) as response:
        for _ in response.iter_lines():
            started.set()


def test_a_full_queue_is_retried_after_retry_after(serve: Serve, api_key: Callable[..., str]) -> None:
    server = serve(concurrency=1, queue_size=1)
    key = api_key()
    waits: list[tuple[int, float]] = []
    with Client(server.url, key, max_retries=20, on_retry=lambda n, w, r: waits.append((r.status_code, w))) as hg:
        chats = [hg.new_conversation("slow").id for _ in range(3)]
        started = [threading.Event(), threading.Event()]
        threads = [threading.Thread(target=_occupy, args=(server.url, key, chats[i], started[i])) for i in (0, 1)]
        threads[0].start()
        assert started[0].wait(10)  # running
        threads[1].start()  # waiting: the queue (size 1) is full
        gate, model = server.state.gate, server.state.agents["slow"].model
        deadline = time.monotonic() + 10
        while gate.queues[model].depth < 1:  # queued, not merely started (a fixed sleep was too short under load)
            assert time.monotonic() < deadline, "the second stream never queued"
            time.sleep(0.02)
        with Client(server.url, key, max_retries=0) as impatient, pytest.raises(Unavailable) as full:
            impatient.send(chats[2], "now")
        assert full.value.type == "queue_full" and full.value.retry_after is not None and full.value.retry_after >= 1
        began = time.monotonic()
        answer = hg.send(chats[2], "when you can")
        assert answer.status == "ok"
        assert waits and all(status == 503 and wait >= 1 for status, wait in waits)  # Retry-After, not backoff
        assert time.monotonic() - began >= sum(w for _, w in waits) - 0.1
        for thread in threads:
            thread.join(20)


def test_async_client(serve: Serve, api_key: Callable[..., str]) -> None:
    server = serve()

    async def main() -> None:
        async with AsyncClient(server.url, api_key()) as hg:
            chat = await hg.new_conversation("echo")
            assert (await hg.send(chat.id, "hi")).status == "ok"
            events = [e async for e in hg.stream(chat.id, "more")]
            assert isinstance(events[-1], RunFinished) and events[-1].status == "ok"
            assert [c.id async for c in hg.iter_conversations()] == [chat.id]
            assert len(await hg.messages(chat.id)) == 4

    asyncio.run(main())


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer(serve: Serve, api_key: Callable[..., str]) -> None:
    """What a client that timed out does: send the message again with the key it used; one turn is stored."""
    server = serve()
    with Client(server.url, api_key()) as hg:
        chat = hg.new_conversation("echo")
        first = hg.send(chat.id, "hello", idempotency_key="turn-1")
        again = hg.send(chat.id, "hello", idempotency_key="turn-1")
        assert again.run_id == first.run_id and again.output == first.output
        replayed = list(hg.stream(chat.id, "hello", idempotency_key="turn-1"))
        assert isinstance(replayed[-1], RunFinished) and replayed[-1].run_id == first.run_id
        other = hg.send(chat.id, "hello", idempotency_key="turn-2")
        assert other.run_id != first.run_id
        assert [m.role for m in hg.messages(chat.id)] == ["user", "assistant", "user", "assistant"]

    async def asynchronous() -> None:
        async with AsyncClient(server.url, api_key()) as hg:
            chat = await hg.new_conversation("echo")
            first = await hg.send(chat.id, "hi", idempotency_key="a")
            assert (await hg.send(chat.id, "hi", idempotency_key="a")).run_id == first.run_id

    asyncio.run(asynchronous())


def test_a_message_cut_off_by_a_shutdown_is_not_sent_again() -> None:
    """The server's 503 ``shutdown`` answers a message it stored and began answering (run interrupted): the
    client retried it after Retry-After, and the restarted server stored the same message as a second turn."""
    sent: list[httpx.Request] = []
    body = {"error": {"type": "shutdown", "message": "the server shut down before the run finished"}}

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503, json=body, headers={"Retry-After": "5"})

    waits: list[float] = []
    with Client("http://test", http=httpx.Client(transport=httpx.MockTransport(server)),
                on_retry=lambda n, w, r: waits.append(w)) as hg, pytest.raises(Unavailable) as cut:
        hg.send("conv_x", "only once")
    assert cut.value.type == "shutdown" and len(sent) == 1 and waits == []

    async def send_async() -> None:
        async with AsyncClient("http://test", http=httpx.AsyncClient(transport=httpx.MockTransport(server))) as hg:
            await hg.send("conv_x", "only once")

    with pytest.raises(Unavailable):
        asyncio.run(send_async())
    assert len(sent) == 2


def test_a_stream_refused_as_busy_says_when_to_send_again() -> None:
    """The server's fatal ``conversation_busy`` event carries ``retry_after``; the StreamError dropped it."""
    busy = ('event: error\ndata: {"type": "error", "kind": "conversation_busy", "message": "busy", "fatal": true, '
            '"retry_after": 3}\n\n')

    def server(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=busy.encode(), headers={"Content-Type": "text/event-stream"})

    with Client("http://test", http=httpx.Client(transport=httpx.MockTransport(server))) as hg, \
            pytest.raises(StreamError) as refused:
        list(hg.stream("conv_x", "hi"))
    assert refused.value.type == "conversation_busy" and refused.value.retry_after == 3
