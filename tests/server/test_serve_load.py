"""A smaller version of scripts/bench/bench_serve.py's load run, in key mode: 20 concurrent clients over
several keys, 120 JSON answers and 80 streams on a scripted agent. Nothing may fail: no 5xx (503 queue-full
aside), no cut stream, no run left `running`."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))
from _load import load, stuck_runs  # the bench's load generator, from its folder


@pytest.mark.timeout(180)
def test_concurrent_clients_in_key_mode_get_no_server_error_and_leave_no_run_running(serve, api_key) -> None:
    server = serve(queue_size=64)
    headers = [{"Authorization": f"Bearer {api_key(f'load{i}')}"} for i in range(4)]
    figures = asyncio.run(load(server.url, headers, clients=20, json_requests=120, streams=80, deadline_s=120))
    figures.stuck_runs = stuck_runs(server.state.store)
    assert figures.server_errors == [], figures.summary()
    assert figures.unstarted == 0 and figures.cut_streams == 0 and figures.stuck_runs == 0, figures.summary()
    assert figures.statuses[200] + figures.statuses[503] == 200 and figures.statuses[201] == 200



def _healthz_while_locked(url: str, store_file: str, send: Callable[[], httpx.Response]) -> tuple[float, int]:
    """How long /healthz takes while ``send`` waits for SQLite's write lock, which another connection holds
    (for 2.5 s at most); and ``send``'s status."""
    locked, release = threading.Event(), threading.Event()

    def writer() -> None:
        db = sqlite3.connect(store_file, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(2.5)
        db.execute("ROLLBACK")
        db.close()

    holder = threading.Thread(target=writer)
    holder.start()
    assert locked.wait(10)
    answers: list[httpx.Response] = []
    sender = threading.Thread(target=lambda: answers.append(send()))
    sender.start()
    time.sleep(0.3)  # the request is waiting for the lock
    started = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    waited = time.monotonic() - started
    release.set()
    holder.join()
    sender.join(30)
    return waited, answers[0].status_code if answers else 0


@pytest.mark.sqlite_only(reason="holds SQLite's database-wide write lock from another connection; PostgreSQL "
                                "locks rows, so no writer waits on another's unrelated transaction there")
def test_a_store_busy_with_another_writer_holds_up_only_the_requests_that_write(serve, api_key) -> None:
    """Another process (a worker, a replica) holding SQLite's write lock makes a request that writes wait for
    it, on a thread: the event loop goes on answering everyone else. An anonymous chat message (its rate limit
    is a write) and a chat completion (its conversation) used to write on the event loop, stalling the server."""
    from halguru.store import open_store

    server, key = serve(), api_key()
    store_file = open_store().path
    with httpx.Client(base_url=server.url, timeout=30) as http:
        session = {"X-Chat-Session": http.post("/chat/api/session").json()["token"]}
        conv = http.post("/chat/api/conversations", json={"agent": "echo"}, headers=session).json()["id"]
        keyed = {"Authorization": f"Bearer {key}"}
        completion = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        assert http.post("/v1/chat/completions", json=completion, headers=keyed).status_code == 200  # key used
        for send in (lambda: http.post(f"/chat/api/conversations/{conv}/messages", json={"content": "hi"},
                                       headers=session),
                     lambda: http.post("/v1/chat/completions", json=completion, headers=keyed)):
            waited, status = _healthz_while_locked(server.url, store_file, send)
            assert waited < 1.5, f"/healthz waited {waited:.1f} s for another request's store write"  # held up: 2.2 s
            assert status == 200
