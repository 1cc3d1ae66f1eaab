"""The worker and the channel pipeline: ``python scripts/bench/bench_jobs.py [--quick]``.

- enqueue -> start latency with an idle worker: in the same process (woken at once) and in another process
  (``halguru worker``: it sees another process's job through the store), p50 and p99;
- jobs/s with 1 and 2 ``halguru worker`` processes on one SQLite store (ratio 2 ÷ 1; the jobs queued
  beforehand, all due at one instant; 1 and 2 workers in turn, five rounds: the median of each round's ratio),
  on a scripted agent (a job is nearly all store writes: SQLite's one writer bounds it) and on a model-bound
  one (the scripted model takes 50 ms an answer, as a model's time dominates a real job);
- a claim under a backlog of 10,000 queued jobs (the store's fair claim: owners with a job running or served
  last wait their turn), one owner's flood and a hundred owners', against a claim from a queue of 100 jobs;
- webhook -> reply through the whole Twilio pipeline (``halguru serve``: signed webhook, queue, worker, agent,
  Twilio's REST API played by a local server), against a synchronous ``POST /v1/.../messages`` answer measured
  in the same run.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import _common  # noqa: F401  (isolates HALGURU_HOME before halguru is imported)
import yaml
from _common import HOME, Result, main

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the Twilio stand-in lives with the tests
HALGURU = [str(Path(sys.executable).parent / "halguru")]
SID, TOKEN, OURS, PUBLIC = "AC" + "0" * 32, "t" * 32, "+15550001111", "https://bot.example.com"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def project(root: Path, channels: dict | None = None, model: str = "scripted") -> Path:
    folder = root / "agents" / "echo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "echo", "model": model, "instructions": "Echo.",
                                                       **({"channels": channels} if channels else {})}))
    return folder


def model_bound() -> str:
    """A scripted model that takes ~50 ms an answer (10 ms a token), as a model's time dominates a real job."""
    script = HOME / "model-bound.yaml"
    script.write_text(yaml.safe_dump([{"text": "one two three four five", "token_delay": 0.01}]))
    return f"scripted:{script}"


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the bench waited too long")
        time.sleep(0.005)


def in_process_latency(n: int) -> list[float]:
    from halguru.agents.loader import load_agent
    from halguru.jobs.handlers import JobContext
    from halguru.jobs.worker import Worker, WorkerSettings
    from halguru.store import open_store

    store = open_store()
    worker = Worker(JobContext(store=store, agents={"echo": load_agent(project(HOME / "inproc"))}), WorkerSettings())
    latencies: list[float] = []

    async def go() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.3)
        for i in range(n):
            job, _ = await asyncio.to_thread(store.enqueue_job, "run", "echo", {"input": f"m{i}"})
            worker.wake()
            while (got := await asyncio.to_thread(store.get_job, job["id"]))["status"] != "done":
                await asyncio.sleep(0.002)
            latencies.append((got["started"] - got["created"]) * 1000)
            await asyncio.sleep(0.02)  # idle again
        worker.stop()
        await task

    asyncio.run(go())
    return latencies


def start_workers(folder: Path, count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` workers, once each has loaded its agents and says so (start-up is not measured)."""
    procs = [subprocess.Popen([*HALGURU, "worker", str(folder)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(count)]
    for p in procs:
        assert p.stderr is not None
        while b"Ctrl-C stops" not in p.stderr.readline():
            if p.poll() is not None:
                raise RuntimeError("a worker failed to start")
        threading.Thread(target=p.stderr.read, daemon=True).start()  # drain the log
    time.sleep(0.5)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(20)


def cross_process_latency(n: int) -> list[float]:
    from halguru.store import open_store

    store = open_store()
    procs = start_workers(project(HOME / "cross"), 1)
    latencies = []
    try:
        for i in range(n):
            job, _ = store.enqueue_job("run", "echo", {"input": f"x{i}"})
            wait_for(lambda j=job: store.get_job(j["id"])["status"] == "done")  # type: ignore[index]
            got = store.get_job(job["id"])
            latencies.append((got["started"] - got["created"]) * 1000)  # type: ignore[index]
            time.sleep(0.05)
    finally:
        stop(procs)
    return latencies


def throughput(workers: int, jobs: int, model: str) -> float:
    """Jobs/s of ``workers`` processes on ``jobs`` jobs queued beforehand, all due at one instant: the clock runs
    from that instant to the last one done, so queuing them is not measured."""
    from halguru.store import open_store

    store = open_store()
    procs = start_workers(project(HOME / f"tp{workers}-{len(model)}", model=model), workers)
    try:
        before = store.job_stats()["done"]
        due = time.time() + 1.0 + jobs * 0.005  # time enough to queue them all (a busy machine included)
        for i in range(jobs):
            store.enqueue_job("run", "echo", {"input": f"j{i}"}, delay=max(0.0, due - time.time()))
        if time.time() > due:
            raise RuntimeError("queuing the jobs took longer than the bench allowed")
        wait_for(lambda: store.job_stats()["done"] - before >= jobs, timeout=600)
        return jobs / (time.time() - due)
    finally:
        stop(procs)


def throughputs(jobs: int, rounds: int, model: str = "scripted") -> dict[int, list[float]]:
    """1 and 2 workers in turn, ``rounds`` times, so a slow spell of the (shared) machine hits both alike."""
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for workers in rates:
            rates[workers].append(throughput(workers, jobs, model))
    return rates


def scaling(jobs: int, rounds: int, model: str, what: str, goal: float) -> Result:
    """2 workers ÷ 1: the median of each round's ratio (1 and 2 workers ran seconds apart)."""
    rates = throughputs(jobs, rounds, model)
    m = statistics.median
    pairs = list(zip(rates[1], rates[2], strict=True))
    ratio = m([b / a for a, b in pairs])
    each = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in pairs)
    return Result("jobs", f"jobs/s, 2 workers ÷ 1 ({what}, SQLite)", ratio, "x", goal, True, ratio, "2 workers ÷ 1",
                  f"1 worker {m(rates[1]):.1f} jobs/s, 2 workers {m(rates[2]):.1f} jobs/s; {jobs} jobs a round, "
                  f"jobs/s of 1/2 workers each round: {each}", rounds)


def pipeline_latency(n: int) -> tuple[list[float], list[float]]:
    """Webhook -> the reply at Twilio, and a synchronous API answer, on one `halguru serve --dev`."""
    import httpx
    from twilio.request_validator import RequestValidator

    from tests.channels.fake_twilio import FakeTwilio

    fake = FakeTwilio(SID, TOKEN).start()
    folder = project(HOME / "pipe", {"twilio": {"account_sid": SID, "auth_token": "BENCH_TWILIO_TOKEN",
                                                "public_url": PUBLIC, "numbers": [OURS], "api_base": fake.url}})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*HALGURU, "serve", str(folder), "--dev", "--port", str(port)],
                            env={**os.environ, "BENCH_TWILIO_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url, validator = f"http://127.0.0.1:{port}", RequestValidator(TOKEN)
    webhook, api = [], []
    try:
        wait_for(lambda: _up(url), timeout=60)
        with httpx.Client(base_url=url, timeout=30) as client:
            conversation = client.post("/v1/conversations", json={"agent": "echo"}).json()["id"]
            for i in range(n):
                form = {"MessageSid": f"SM{i:032x}", "AccountSid": SID, "From": f"+1555{i:07d}", "To": OURS,
                        "Body": f"hello {i}", "NumMedia": "0"}
                signature = validator.compute_signature(f"{PUBLIC}/channels/twilio/echo", form)
                count = len(fake.messages)
                started = time.perf_counter()
                client.post("/channels/twilio/echo", data=form, headers={"X-Twilio-Signature": signature})
                wait_for(lambda c=count: len(fake.messages) > c)
                webhook.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                client.post(f"/v1/conversations/{conversation}/messages", json={"content": f"hello {i}"})
                api.append((time.perf_counter() - started) * 1000)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        fake.stop()
    return webhook, api


def claim_latency(backlog: int, owners: int, claims: int) -> list[float]:
    """Milliseconds per ``claim_job`` with ``backlog`` jobs queued over ``owners`` owners in a fresh SQLite store,
    one job per owner running meanwhile (so the fair passes skip them), as a busy worker sees it."""
    from halguru.store import open_store

    store = open_store(HOME / f"claims-{backlog}-{owners}.db")
    with store._tx() as conn:  # one transaction: 10,000 enqueue_job calls would each commit
        now = time.time()
        conn.executemany(
            "INSERT INTO jobs (id, kind, agent, payload, status, max_attempts, run_after, owner, created) "
            "VALUES (?, 'run', 'echo', '{}', 'queued', 5, ?, ?, ?)",
            [(f"job_{i:08d}", now - 1, f"key_{i % owners}", now) for i in range(backlog)])
    for _ in range(min(owners, 8)):  # a few owners busy: the claim's fair passes have work to do
        store.claim_job("busy", 600)
    times = []
    for _ in range(claims):
        started = time.perf_counter()
        job = store.claim_job("bench", 600, served=["key_1"])
        times.append((time.perf_counter() - started) * 1000)
        assert job is not None
    store.close()
    return times


def _up(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz").status_code == 200
    except httpx.TransportError:
        return False


def measure(quick: bool) -> list[Result]:
    n, jobs, rounds = (20, 60, 1) if quick else (100, 500, 5)
    inproc, cross = in_process_latency(n), cross_process_latency(n)
    store_bound = scaling(jobs, rounds, "scripted", "scripted agent", 1.3)
    bound = scaling(jobs // 5, rounds, model_bound(), "model-bound: 50 ms a job", 1.6)
    webhook, api = pipeline_latency(n // 2)
    small, flood, many = claim_latency(100, 1, 40), claim_latency(10_000, 1, 40), claim_latency(10_000, 100, 40)
    m = statistics.median
    return [
        Result("jobs", "enqueue→start, idle worker in another process (p50)", m(cross), "ms", 50, False,
               m(cross) / m(inproc), "÷ same process (woken)",
               f"other process p50 {m(cross):.1f} / p99 {pct(cross, 0.99):.1f} ms; same process p50 "
               f"{m(inproc):.1f} / p99 {pct(inproc, 0.99):.1f} ms", n),
        store_bound,
        bound,
        Result("jobs", "claim with 10,000 jobs queued by 100 owners (p50)", m(many), "ms", 25, False,
               m(many) / m(small), "÷ a claim with 100 queued", f"100 owners p50 {m(many):.1f} / p99 "
               f"{pct(many, 0.99):.1f} ms; one owner's flood p50 {m(flood):.1f} ms; 100 queued p50 {m(small):.1f} ms",
               len(many)),
        Result("jobs", "Twilio webhook → reply sent (p50)", m(webhook), "ms", 250, False, m(webhook) / m(api),
               "÷ a synchronous API answer", f"webhook→reply p50 {m(webhook):.1f} / p99 {pct(webhook, 0.99):.1f} "
               f"ms; POST /v1/…/messages p50 {m(api):.1f} ms", len(webhook)),
    ]


if __name__ == "__main__":
    main("jobs and channels", measure, __doc__ or "")
