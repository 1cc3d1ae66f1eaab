"""Serve mode against one principal's flood: what a second user's simple requests cost meanwhile.

One real ``halguru serve`` process (key mode, a scripted agent). The attacker is one user with one key: 50
clients in another process, each sending its next request as soon as the last is answered (a 429 included:
an attacker does not wait for Retry-After), at one kind of route at a time:

- ``agents``: GET /v1/agents; ``list``: GET /v1/conversations?limit=100; ``history``: GET a conversation's
  1,000 messages; ``chat``: POST a message to the scripted agent; ``openai``: POST /v1/chat/completions;
  ``upload``: POST a small attachment; ``stream``: POST a message with ``stream: true`` (SSE).

Meanwhile the victim, another user with their own key, alternates GET /v1/agents and a chat message on the
scripted model, one at a time. Each figure is the victim's p50 (and p99) during the flood ÷ the same with no
flood, measured in the same run; the server is run twice, with the per-principal in-flight cap off
(``max_in_flight: 0``, the baseline) and at its default, so the last column compares the two.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common
import httpx
from _common import Result, stop

CLIENTS = 50
KINDS = ("agents", "list", "history", "chat", "openai", "upload", "stream")
BIG = "conv_bench_big"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(agents: Path, cap: int | None, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    env = {**os.environ, "HALGURU_SERVE_LOG_LEVEL": "warning"}
    if cap is not None:
        env["HALGURU_SERVE_MAX_IN_FLIGHT"] = str(cap)
    proc = subprocess.Popen([sys.executable, "-m", "halguru", "serve", str(agents), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    _common.wait_until_up(proc, url, log)
    return proc, url


def _seed() -> tuple[str, str, str]:
    """An attacker's key and a victim's, each of its own user (developers: they may read their runs), and a
    conversation of the attacker's with 1,000 messages (written to the store directly: quicker than 500 turns)."""
    from halguru_server.identity.accounts import create_user
    from halguru_server.keys import create_key

    from halguru.models.base import Message
    from halguru.store import open_store

    store = open_store()
    secrets, owners = [], []
    for who in ("attacker", "victim"):
        user = create_user(store, f"{who}@example.com", role="developer")
        secrets.append(create_key(store, who, user_id=user["id"], scope="user")[1])
        owners.append(f"user:{user['id']}")
    history = [Message(role="user" if i % 2 == 0 else "assistant", content=f"message {i} " + "words " * 20)
               for i in range(1000)]
    store.create_conversation(BIG, "echo", "big", history, owner=owners[0])
    return secrets[0], secrets[1], BIG


def _conversation(url: str, key: str, messages: int) -> str:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        conversation = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
        for i in range(messages):
            client.post(f"/v1/conversations/{conversation}/messages", json={"content": f"message {i}"})
        return str(conversation)


def _request(kind: str, conversation: str) -> tuple[str, str, dict[str, Any]]:
    """(method, path, httpx keyword arguments) of one flood request."""
    if kind == "agents":
        return "GET", "/v1/agents", {}
    if kind == "list":
        return "GET", "/v1/conversations?limit=100", {}
    if kind == "history":
        return "GET", f"/v1/conversations/{BIG}/messages?limit=1000", {}
    if kind in ("chat", "stream"):
        return "POST", f"/v1/conversations/{conversation}/messages", {"json": {"content": "hi",
                                                                              "stream": kind == "stream"}}
    if kind == "openai":
        return "POST", "/v1/chat/completions", {"json": {"model": "echo",
                                                         "messages": [{"role": "user", "content": "hi"}]}}
    return "POST", f"/chat/api/conversations/{conversation}/attachments?name=notes.txt", {"content": b"notes " * 200}


async def _flood(url: str, key: str, kind: str, conversation: str, seconds: float) -> dict[int, int]:
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits,
                                 timeout=60) as client:
        async def one(conversation: str) -> None:
            method, path, kwargs = _request(kind, conversation)
            while time.monotonic() < deadline:
                try:
                    async with client.stream(method, path, **kwargs) as response:
                        await response.aread()
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                except httpx.HTTPError:
                    statuses[0] = statuses.get(0, 0) + 1

        if kind in ("chat", "stream", "upload"):  # each client its own conversation (one is busy with a run)
            conversations = [(await client.post("/v1/conversations", json={"agent": "echo"})).json()["id"]
                             for _ in range(CLIENTS)]
        else:
            conversations = [conversation] * CLIENTS
        await asyncio.gather(*(one(c) for c in conversations))
    return statuses


def _victim(url: str, key: str, conversation: str, seconds: float) -> dict[str, list[float]]:
    """The victim's latencies (ms) of GET /v1/agents and of a chat message, alternated for ``seconds``."""
    times: dict[str, list[float]] = {"agents": [], "chat": []}
    statuses: list[int] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for what in ("agents", "chat"):
                started = time.perf_counter()
                if what == "agents":
                    response = client.get("/v1/agents")
                else:
                    response = client.post(f"/v1/conversations/{conversation}/messages", json={"content": "hello"})
                times[what].append((time.perf_counter() - started) * 1000)
                statuses.append(response.status_code)
                time.sleep(0.02)
    if any(status != 200 for status in statuses):
        times["refused"] = [float(s) for s in statuses if s != 200]
    return times


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def _run_server(agents: Path, cap: int | None, seconds: float) -> dict[str, dict[str, Any]]:
    proc, url = _start(agents, cap, _common.HOME / f"serve-{cap}.log")
    attacker, victim, _ = _seed_once()
    try:
        target = _conversation(url, attacker, 20)
        own = _conversation(url, victim, 2)
        figures: dict[str, dict[str, Any]] = {"idle": {"victim": _victim(url, victim, own, seconds)}}
        for kind in KINDS:
            flood = subprocess.Popen([sys.executable, __file__, "--flood", url, attacker, kind, target,
                                      str(seconds + 2.5)], stdout=subprocess.PIPE)
            time.sleep(2.0)  # the flood is at full strength before the victim starts
            times = _victim(url, victim, own, seconds)
            out, _ = flood.communicate(timeout=120)
            figures[kind] = {"victim": times, "flood": json.loads(out or b"{}")}
        return figures
    finally:
        stop(proc, 15)


_made: list[tuple[str, str, str]] = []


def _seed_once() -> tuple[str, str, str]:
    """Both servers share the home (and so the users, keys and conversations): made once."""
    if not _made:
        _made.append(_seed())
    return _made[0]


def measure(quick: bool) -> list[Result]:
    agents = _common.scripted_agents(_common.HOME / "agents", ["echo"])
    seconds = 2.0 if quick else 4.0
    uncapped = _run_server(agents, 0, seconds)
    capped = _run_server(agents, None, seconds)
    results = []
    for kind in KINDS:
        for what in ("agents", "chat"):
            base_idle, idle = uncapped["idle"]["victim"][what], capped["idle"]["victim"][what]
            base_times, times = uncapped[kind]["victim"][what], capped[kind]["victim"][what]
            base_ratio = _percentile(base_times, 0.5) / _percentile(base_idle, 0.5)
            ratio = _percentile(times, 0.5) / _percentile(idle, 0.5)
            refused = len(capped[kind]["victim"].get("refused", []))
            results.append(Result(
                "inflight", f"victim's {what} p50 under a {kind} flood ÷ idle", ratio, "x", 3.0, False,
                ratio / base_ratio, "the same with the cap off",
                f"capped: p50 {_percentile(times, 0.5):.0f} ms p99 {_percentile(times, 0.99):.0f} ms (idle "
                f"{_percentile(idle, 0.5):.0f}/{_percentile(idle, 0.99):.0f}), victim refused {refused}, flood "
                f"{capped[kind]['flood']}; uncapped: p50 {_percentile(base_times, 0.5):.0f} ms p99 "
                f"{_percentile(base_times, 0.99):.0f} ms (idle {_percentile(base_idle, 0.5):.0f}/"
                f"{_percentile(base_idle, 0.99):.0f}), flood {uncapped[kind]['flood']}", len(times)))
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flood"]:
        url, key, kind, conversation, seconds = sys.argv[2:7]
        print(json.dumps(asyncio.run(_flood(url, key, kind, conversation, float(seconds)))))
    else:
        _common.main("Serve against one principal's flood of concurrent requests", measure,
                     "a second user's latency while one key keeps 50 requests in flight, cap off and on")
