"""Serve mode on loopback: API throughput, SSE overhead, interleaved TTFT on llama.cpp, idle streams.

- req/s of GET /v1/agents ÷ a bare FastAPI app returning the same JSON (goal ≥ 0.5);
- per-token time through SSE minus direct ``run()`` streaming, scripted model (µs/token);
- TTFT of 4 alternating conversations ÷ the same turns in one conversation, one llama.cpp model (goal ≤ 1.5);
- 500 idle SSE streams held: memory per stream and /healthz p99 ÷ its p99 with none open (same server);
- load in key mode: 50 concurrent clients, 600 JSON answers and 400 streams on a scripted agent (several keys),
  bounded in time: 5xx other than 503, cut streams, runs left ``running`` (goals 0), p50/p99, and req/s
  ÷ the same load on a --dev server in the same run (goal ≥ 0.8).
Each server is a real uvicorn in a thread of this process; clients are httpx on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common
import httpx
import yaml
from _common import Result, median
from _load import LoadFigures, load, stuck_runs

N_REQ = 400


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app: Any) -> tuple[str, Callable[[], None]]:
    """A uvicorn server in a thread: its URL and a function that shuts it down (its worker, lifespan and all:
    a server left running at exit had its in-process worker fail on the interpreter's closed executor)."""
    import uvicorn

    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           limit_concurrency=2000, backlog=2048))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)

    def shut_down() -> None:
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{port}", shut_down


def _agents(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    script = root / "idle.yaml"
    script.write_text(yaml.safe_dump([{"text": "idle " * 3, "token_delay": 60}]))
    for name, model in (("echo", "scripted"), ("idle", f"scripted:{script}")):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "agent.yaml").write_text(yaml.safe_dump({"name": name, "model": model, "instructions": "x"}))
    return root


def _rps(url: str, path: str) -> float:
    with httpx.Client(base_url=url) as client:
        client.get(path)
        started = time.perf_counter()
        for _ in range(N_REQ):
            client.get(path).raise_for_status()
        return N_REQ / (time.perf_counter() - started)


def bench_rps(quick: bool, url: str) -> Result:
    from fastapi import FastAPI

    with httpx.Client(base_url=url) as c:
        payload = c.get("/v1/agents").json()
    bare = FastAPI()
    bare.get("/v1/agents")(lambda: payload)
    bare_url, stop_bare = _serve(bare)
    ours, base = [], []
    for _ in range(2 if quick else 5):
        ours.append(_rps(url, "/v1/agents"))
        base.append(_rps(bare_url, "/v1/agents"))
    stop_bare()
    ratio = median(ours) / median(base)
    return Result("serve", "GET /v1/agents req/s ÷ bare FastAPI", ratio, "x", 0.5, True, ratio, "bare FastAPI",
                  f"{median(ours):.0f} vs {median(base):.0f} req/s", len(ours))


def bench_sse(quick: bool, url: str, agents: Path) -> Result:
    from halguru.agents.loader import load_agent
    from halguru.agents.runtime import run
    from halguru.models.scripted import ScriptedModel

    text = " ".join(f"w{i}" for i in range(500))
    (agents / "echo" / "agent.yaml").write_text(yaml.safe_dump({"name": "echo", "model": "scripted",
                                                                "instructions": "x"}))
    agent = load_agent(agents / "echo")

    async def direct() -> float:
        started = time.perf_counter()
        async for _ in run(agent, text, model=ScriptedModel(), record=True):
            pass
        return time.perf_counter() - started

    def http() -> float:
        with httpx.Client(base_url=url, timeout=60) as c:
            conv = c.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
            started = time.perf_counter()
            with c.stream("POST", f"/v1/conversations/{conv}/messages", json={"content": text, "stream": True}) as r:
                for _ in r.iter_lines():
                    pass
            return time.perf_counter() - started

    tokens = len(text.split()) + 2  # "You said:" + the words
    d, h = [], []
    for _ in range(3 if quick else 7):
        d.append(asyncio.run(direct()) / tokens * 1e6)
        h.append(http() / tokens * 1e6)
    extra = median(h) - median(d)
    return Result("serve", "SSE overhead per token", extra, "µs", 100.0, False, median(h) / median(d),
                  "direct run()", f"{median(h):.1f} µs/token via SSE, {median(d):.1f} direct", len(h))


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _healthz_p99(c: httpx.AsyncClient, n: int = 200) -> float:
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        (await c.get("/healthz")).raise_for_status()
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return lat[int(len(lat) * 0.99) - 1]


def bench_idle_streams(quick: bool, url: str) -> Result:
    n = 100 if quick else 500

    async def main() -> tuple[float, float, float]:
        async with httpx.AsyncClient(base_url=url, timeout=120,
                                     limits=httpx.Limits(max_connections=n + 10)) as c:
            convs = [(await c.post("/v1/conversations", json={"agent": "idle"})).json()["id"] for _ in range(n)]
            idle_p99 = await _healthz_p99(c)  # the baseline: the same server with no stream open
            before = _rss()
            opened: list[Any] = []
            for conv in convs:
                req = c.build_request("POST", f"/v1/conversations/{conv}/messages", json={"content": "x",
                                                                                         "stream": True})
                opened.append(await c.send(req, stream=True))
            await asyncio.sleep(0.5)
            per_stream = (_rss() - before) / n
            p99 = await _healthz_p99(c)
            for r in opened:
                await r.aclose()
            return per_stream, p99, idle_p99

    per_stream, p99, idle_p99 = asyncio.run(main())
    return Result("serve", f"/healthz p99 with {n} idle SSE streams", p99, "ms", 50.0, False, p99 / idle_p99,
                  "of /healthz p99 with no stream open", f"{p99:.1f} vs {idle_p99:.1f} ms; "
                  f"{per_stream / 1024:.1f} KiB per stream (client+server in one process)", 1)


def bench_interleaved(quick: bool) -> Result:
    from halguru.agents.runtime import run_to_result

    folder = _common.write_agent(_common.HOME / "llama", "You are a helpful assistant. Answer briefly.", 8)
    later = ["What is a cat?", "And a dog?", "Thanks."][: 2 if quick else 3]
    # each conversation opens differently: four identical ones would each find the one before's turn in the model's
    # live KV cache (20 ms where a real switch restores its own state), flattering the interleaved figure ~15x
    chats = [[f"Hi, I am {name}!", *later] for name in ("Ann", "Bob", "Cai", "Dee")]

    async def ttft(conv: str | None, text: str) -> tuple[str, float]:
        r = await run_to_result(folder, text, conv)
        ttfts = [e.ttft_ms for e in r.events if e.type == "model_result" and e.ttft_ms]
        return r.conversation_id, ttfts[0] if ttfts else 0.0

    async def main() -> tuple[list[float], list[float]]:
        await ttft(None, "warm up")
        single: list[float] = []
        for turns in chats:  # the same turns, one conversation at a time
            conv = None
            for text in turns:
                conv, t = await ttft(conv, text)
                single.append(t)
        convs: list[str | None] = [None] * len(chats)
        inter = []
        for step in range(len(chats[0])):  # then A1 B1 C1 D1 A2 B2 ...
            for i, turns in enumerate(chats):
                convs[i], t = await ttft(convs[i], turns[step])
                inter.append(t)
        return single, inter

    single, inter = asyncio.run(main())
    ratio = median(inter) / median(single)
    return Result("serve", "interleaved TTFT (4 conversations ÷ 1)", ratio, "x", 1.5, False, ratio,
                  "one conversation", f"{median(inter):.1f} vs {median(single):.1f} ms", len(inter))


def _load_run(agents: Path, dev: bool, clients: int, n_json: int, n_streams: int) -> LoadFigures:
    """One load run on a fresh server (key mode: five keys shared by the clients)."""
    from halguru_server import ServerSettings, create_app
    from halguru_server.keys import create_key

    from halguru.store import open_store

    app = create_app(ServerSettings(agents=[agents], dev=dev, queue_size=64))
    url, shut_down = _serve(app)
    headers = [{}] if dev else [{"Authorization": f"Bearer {create_key(open_store(), f'load{i}')[1]}"}
                                for i in range(5)]
    store = app.state.halguru.store
    before = len([r for r in store.list_runs(limit=1_000_000) if r["status"] == "running"])
    figures = asyncio.run(load(url, headers, clients, n_json, n_streams, agent="echo", deadline_s=180))
    figures.stuck_runs = max(0, stuck_runs(store) - before)
    shut_down()
    return figures


def bench_load(quick: bool, agents: Path) -> list[Result]:
    import logging

    clients, n_json, n_streams = (20, 120, 80) if quick else (50, 600, 400)
    logging.disable(logging.ERROR)  # a failing server logs a traceback per request: the figures say enough
    try:
        dev = _load_run(agents, True, clients, n_json, n_streams)
        keyed = _load_run(agents, False, clients, n_json, n_streams)
    finally:
        logging.disable(logging.NOTSET)
    for name, figures in (("--dev", dev), ("key mode", keyed)):
        print(f"load {name}: {figures.summary()}", flush=True)
        for error in figures.server_errors[:5]:
            print(f"  {error}", flush=True)
    ratio = keyed.rps / dev.rps if dev.rps else 0.0
    load_name = f"{clients} clients, {n_json} JSON + {n_streams} streams"
    detail = keyed.summary()
    return [
        Result("serve", f"key-mode load req/s ÷ --dev ({load_name})", ratio, "x", 0.8, True, ratio, "--dev load",
               f"{keyed.rps:.0f} vs {dev.rps:.0f} req/s; p50 {keyed.percentile(0.5):.0f} ms, "
               f"p99 {keyed.percentile(0.99):.0f} ms", 1),
        Result("serve", "key-mode load: 5xx other than 503", len(keyed.server_errors), "", 0, False, 1.0, "—",
               detail, 1),
        Result("serve", "key-mode load: cut streams", keyed.cut_streams, "", 0, False, 1.0, "—",
               f"{keyed.cut_streams} of {keyed.streams} streams", 1),
        Result("serve", "key-mode load: runs left running", keyed.stuck_runs, "", 0, False, 1.0, "—",
               f"--dev: {dev.stuck_runs}", 1),
    ]


def measure(quick: bool) -> list[Result]:
    from halguru_server import ServerSettings, create_app

    agents = _agents(_common.HOME / "agents")
    app = create_app(ServerSettings(agents=[agents], dev=True, queue_size=1000, concurrency=1000))
    url, shut_down = _serve(app)
    results = [bench_rps(quick, url), bench_sse(quick, url, agents)]
    results.append(bench_idle_streams(quick, url))
    shut_down()
    results += bench_load(quick, agents)
    results.append(bench_interleaved(quick))
    return results


if __name__ == "__main__":
    _common.main("halguru serve", measure, __doc__ or "")
