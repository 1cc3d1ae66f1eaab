"""The serve-mode load run, shared by ``bench_serve.py`` and the test that runs a smaller version of it.

N concurrent clients share one list of jobs (JSON answers and SSE streams, shuffled); each job creates a
conversation and posts one message. Everything a user would notice is counted: server errors other than
503 (queue full, which tells the client to retry), streams that end before ``run_finished``, runs still
``running`` once the load is over, and the latency of each answer. The run is bounded in time: jobs not
started by the deadline are counted as ``unstarted``, not waited for.

This module imports only httpx, so a test can import it without the benchmarks' throwaway home.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class LoadFigures:
    """What one load run saw."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # 5xx other than 503, with their message
    streams: int = 0
    cut_streams: int = 0
    unstarted: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stuck_runs: int = 0  # filled in by the caller, which can see the store

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.seconds:.1f} s ({self.rps:.0f} req/s), "
                f"p50 {self.percentile(0.5):.0f} ms, p99 {self.percentile(0.99):.0f} ms, "
                f"5xx≠503 {len(self.server_errors)}, 503 {self.statuses[503]}, "
                f"cut streams {self.cut_streams}/{self.streams}, stuck runs {self.stuck_runs}, "
                f"unstarted {self.unstarted}")


async def _job(client: httpx.AsyncClient, agent: str, stream: bool, figures: LoadFigures) -> None:
    def seen(response: httpx.Response, body: str = "") -> None:
        figures.requests += 1
        figures.statuses[response.status_code] += 1
        if response.status_code >= 500 and response.status_code != 503:
            figures.server_errors.append(f"{response.status_code} {response.request.url.path}: {body[:200]}")

    created = await client.post("/v1/conversations", json={"agent": agent})
    seen(created, created.text)
    if created.status_code != 201:
        return
    path = f"/v1/conversations/{created.json()['id']}/messages"
    started = time.perf_counter()
    if not stream:
        answer = await client.post(path, json={"content": "hello there"})
        seen(answer, answer.text)
        if answer.status_code == 200:
            figures.latencies_ms.append((time.perf_counter() - started) * 1000)
        return
    figures.streams += 1
    last = ""
    try:
        async with client.stream("POST", path, json={"content": "hello there", "stream": True}) as response:
            if response.status_code != 200:
                seen(response, (await response.aread()).decode(errors="replace"))
                figures.streams -= 1  # refused before it began (counted as a response), not cut
                return
            seen(response)
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    last = line[7:]
    except httpx.HTTPError:
        pass
    if last != "run_finished":
        figures.cut_streams += 1
    else:
        figures.latencies_ms.append((time.perf_counter() - started) * 1000)


async def load(url: str, headers: list[dict[str, str]], clients: int = 50, json_requests: int = 600,
               streams: int = 400, agent: str = "echo", deadline_s: float = 120.0, seed: int = 0) -> LoadFigures:
    """Run the load against ``url``; client i sends ``headers[i % len(headers)]`` (several keys at once)."""
    jobs = [False] * json_requests + [True] * streams
    random.Random(seed).shuffle(jobs)
    queue: asyncio.Queue[bool] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    figures = LoadFigures()
    ends = time.monotonic() + deadline_s
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)

    async def worker(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers[i % len(headers)], timeout=60,
                                     limits=limits) as client:
            while not queue.empty():
                if time.monotonic() > ends:
                    figures.unstarted = queue.qsize()
                    return
                job = queue.get_nowait()
                try:
                    await _job(client, agent, job, figures)
                except httpx.HTTPError as exc:
                    figures.server_errors.append(f"transport: {type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    figures.seconds = time.perf_counter() - started
    return figures


def stuck_runs(store: Any, settle_s: float = 5.0) -> int:
    """Runs still ``running`` once every request is answered (allowing ``settle_s`` for the last writes)."""
    ends = time.monotonic() + settle_s
    while True:
        running = [r for r in store.list_runs(limit=1_000_000) if r["status"] == "running"]
        if not running or time.monotonic() > ends:
            return len(running)
        time.sleep(0.2)


def as_json(figures: LoadFigures) -> str:
    return json.dumps({"rps": figures.rps, "p50_ms": figures.percentile(0.5), "p99_ms": figures.percentile(0.99),
                       "server_errors": len(figures.server_errors), "cut_streams": figures.cut_streams,
                       "stuck_runs": figures.stuck_runs, "statuses": dict(figures.statuses)})
