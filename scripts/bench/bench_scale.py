"""Scale-out: ``python scripts/bench/bench_scale.py [--quick]``.

- requests/s and p50/p99 of ``POST /v1/conversations/ID/messages`` (scripted echo agent, JSON answers, API key,
  conversations of 3 turns) from N concurrent clients, on 1 and on 2 ``halguru serve --no-worker`` replicas
  sharing one database, PostgreSQL and SQLite (each client's conversations stay on one replica, as an
  affinity-keeping load balancer would route them): ratio 2 replicas ÷ 1 (goal ≥ 1.6 on PostgreSQL; SQLite has
  one writer at a time, so its figure shows what a second replica costs there rather than what it gains: goal
  ≥ 1.0, a second replica loses nothing);
- the same load on one replica on PostgreSQL ÷ on SQLite (goal ≥ 0.7);
- all four serve configurations run at once and are loaded in turn, five rounds (medians);
- jobs/s (scripted agent) with 1 and 2 ``halguru worker`` processes, on SQLite and on PostgreSQL (2 ÷ 1; goal
  ≥ 1.6 on PostgreSQL, ≥ 1.3 on SQLite, whose one writer bounds a store-bound job: bench_jobs.py's goal).

The load generator is a minimal keep-alive HTTP/1.1 client on asyncio in this process (httpx spends more CPU per
request than the server, which on 2 cores would measure the client); its CPU time (``resource.getrusage``) and
the server processes' (``/proc/PID/stat``) are reported, as a share of what the machine's cores offered.
PostgreSQL: a fresh database ``halguru_bench_<random>`` on ``HALGURU_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), dropped at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import _common  # noqa: F401  (isolates HALGURU_HOME before halguru is imported)
import yaml
from _common import HOME, Result, main, median

HALGURU = [str(Path(sys.executable).parent / "halguru")]
ADMIN_URL = os.environ.get("HALGURU_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CLIENTS = 32
TURNS = 3
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


# -- the processes ---------------------------------------------------------------------------------------
def project(root: Path) -> Path:
    folder = root / "agents" / "echo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "echo", "model": "scripted", "instructions": "Echo."}))
    (root / "serve.yaml").write_text(yaml.safe_dump({"log_level": "warning", "queue_size": 256,
                                                     "session_secret": "bench", "job_poll": 0.1}))
    return root


@dataclass
class Setup:
    """One database (a fresh HALGURU_HOME, or a PostgreSQL database) with an agent project and an API key."""

    name: str
    root: Path
    env: dict[str, str]
    key: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, ready: str) -> subprocess.Popen[bytes]:
        """A `halguru` process, once its log says ``ready`` (start-up is not measured)."""
        proc = subprocess.Popen([*HALGURU, *args, "--config", str(self.root / "serve.yaml")], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        seen = b""
        while ready.encode() not in (line := proc.stderr.readline()):
            seen += line
            if proc.poll() is not None:
                raise RuntimeError(f"`halguru {args[0]}` failed to start:\n{seen.decode()[-2000:]}")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain the log
        self.procs.append(proc)
        return proc

    def replica(self, port: int) -> int:
        self.start("serve", str(self.root / "agents"), "--no-worker", "--port", str(port), ready="worker   off")
        deadline = time.monotonic() + 30
        while not _up(port):  # the banner comes before uvicorn listens
            if time.monotonic() > deadline:
                raise RuntimeError("a replica did not start listening")
            time.sleep(0.05)
        return port

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def cpu(self) -> float:
        """CPU seconds the running server and worker processes have used."""
        total = 0.0
        for proc in self.procs:
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        return total


def _up(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(kind: str) -> Iterator[Setup]:
    """A Setup on a fresh SQLite home or a fresh PostgreSQL database (created here, dropped after)."""
    root = project(HOME / f"{kind}-{secrets.token_hex(3)}")
    env = {**os.environ, "HALGURU_HOME": str(root / "home")}
    env.pop("HALGURU_DATABASE_URL", None)
    name = ""
    if kind == "postgresql":
        import psycopg

        name = f"halguru_bench_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        env["HALGURU_DATABASE_URL"] = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    setup = Setup(kind, root, env)
    try:
        made = subprocess.run([*HALGURU, "keys", "create", "bench"], env=env, capture_output=True, text=True,
                              timeout=120, check=True)
        setup.key = made.stdout.strip()
        yield setup
    finally:
        setup.stop()
        if name:
            import psycopg

            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the load generator ------------------------------------------------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection: a request is one write, an answer is read by its Content-Length."""

    def __init__(self, port: int, key: str):
        self.port, self.head = port, f"Host: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n" \
                                     "Content-Type: application/json\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, object]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Load:
    """What one load run measured."""

    seconds: float
    latencies: list[float] = field(default_factory=list)  # ms, message posts started after the warm-up
    errors: int = 0
    client_cpu: float = 0.0  # CPU seconds of this process (the load generator)
    server_cpu: float = 0.0  # CPU seconds of the replicas

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def share(self, cpu: float) -> float:
        """``cpu`` as a share of what the machine's cores offered during the run."""
        return cpu / (self.seconds * CORES)


async def _client(port: int, key: str, start: float, stop: float, load: Load) -> None:
    conn = Connection(port, key)
    try:
        while time.perf_counter() < stop:
            status, body = await conn.post("/v1/conversations", {"agent": "echo"})
            if status != 201:
                load.errors += 1
                continue
            conv = json.loads(body)["id"]
            for turn in range(TURNS):
                began = time.perf_counter()
                status, body = await conn.post(f"/v1/conversations/{conv}/messages", {"content": f"turn {turn}"})
                if status != 200:
                    load.errors += 1
                elif began >= start:
                    load.latencies.append((time.perf_counter() - began) * 1000)
    finally:
        conn.close()


def run_load(setup: Setup, ports: list[int], seconds: float, warmup: float = 1.0) -> Load:
    """``CLIENTS`` clients for ``warmup + seconds``; client i sticks to replica i mod len(ports)."""
    load = Load(seconds)
    cpu0, server0 = resource.getrusage(resource.RUSAGE_SELF), setup.cpu()

    async def go() -> None:
        start = time.perf_counter() + warmup
        await asyncio.gather(*(_client(ports[i % len(ports)], setup.key, start, start + seconds, load)
                               for i in range(CLIENTS)))

    began = time.perf_counter()
    asyncio.run(go())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    # The warm-up's CPU is in these totals too: scale to the measured part of the wall time.
    scale = seconds / (time.perf_counter() - began)
    load.client_cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) * scale
    load.server_cpu = (setup.cpu() - server0) * scale
    return load


def serve_runs(configs: list[tuple[str, int]], reps: int, seconds: float) -> dict[tuple[str, int], list[Load]]:
    """Each (database kind, replicas) on a database of its own, all started first, then loaded in turn, round
    by round: a slow spell of the machine (one load's figure moves by a third from one minute to the next on
    these shared machines) then hits every configuration alike instead of the one measured at that time."""
    with ExitStack() as stack:
        running = []
        for kind, replicas in configs:
            setup = stack.enter_context(database(kind))
            running.append(((kind, replicas), setup, [setup.replica(free_port()) for _ in range(replicas)]))
        loads: dict[tuple[str, int], list[Load]] = {config: [] for config, _, _ in running}
        for _ in range(reps):
            for config, setup, ports in running:
                loads[config].append(run_load(setup, ports, seconds))
        return loads


# -- jobs ----------------------------------------------------------------------------------------------------
def jobs_per_second(kind: str, workers: int, jobs: int) -> float:
    with database(kind) as setup:
        store = _store(setup)
        for _ in range(workers):
            setup.start("worker", str(setup.root / "agents"), ready="Ctrl-C stops")
        time.sleep(0.5)
        started = time.perf_counter()
        for i in range(jobs):
            store.enqueue_job("run", "echo", {"input": f"j{i}"})
        deadline = time.monotonic() + 600
        while store.job_stats()["done"] < jobs:
            if time.monotonic() > deadline:
                raise TimeoutError("the jobs did not finish")
            time.sleep(0.01)
        rate = jobs / (time.perf_counter() - started)
        store.close()
        return rate


def _store(setup: Setup):  # type: ignore[no-untyped-def]
    """This process's own handle on the setup's database (the env of this process names another home)."""
    if "HALGURU_DATABASE_URL" in setup.env:
        from halguru.store.postgres import PostgresStore

        return PostgresStore(setup.env["HALGURU_DATABASE_URL"])
    from halguru.store.sqlite import SQLiteStore

    return SQLiteStore(Path(setup.env["HALGURU_HOME"]) / "halguru.db")


# -- results -------------------------------------------------------------------------------------------------
def _figures(loads: list[Load]) -> tuple[float, float, float, float, float]:
    """Medians: req/s, p50 ms, p99 ms, client CPU share, server CPU share."""
    return (median([x.rps for x in loads]), median([pct(x.latencies, 0.5) for x in loads]),
            median([pct(x.latencies, 0.99) for x in loads]), median([x.share(x.client_cpu) for x in loads]),
            median([x.share(x.server_cpu) for x in loads]))


def _describe(label: str, loads: list[Load]) -> str:
    rps, p50, p99, client, server = _figures(loads)
    errors = sum(x.errors for x in loads)
    return (f"{label}: {rps:.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms, load generator {client:.0%} "
            f"of {CORES} cores, replicas {server:.0%}" + (f", {errors} errors" if errors else ""))


REPLICA_GOAL = {"postgresql": 1.6, "sqlite": 1.0}  # SQLite's one writer: a second replica cannot double it
WORKER_GOAL = {"postgresql": 1.6, "sqlite": 1.3}  # SQLite: bench_jobs.py's goal for the same store-bound jobs


def measure(quick: bool) -> list[Result]:
    reps, seconds, jobs = (1, 3.0, 100) if quick else (5, 6.0, 200)
    loads = serve_runs([(kind, n) for kind in ("sqlite", "postgresql") for n in (1, 2)], reps, seconds)
    rps = {k: _figures(v)[0] for k, v in loads.items()}
    rates = {(kind, n): median([jobs_per_second(kind, n, jobs) for _ in range(1 if quick else 2)])
             for kind in ("sqlite", "postgresql") for n in (1, 2)}
    results = []
    for kind in ("postgresql", "sqlite"):
        ratio = rps[(kind, 2)] / rps[(kind, 1)]
        results.append(Result(
            "scale", f"requests/s, 2 replicas ÷ 1 ({kind}, {CLIENTS} clients, {CORES} cores)", ratio, "x",
            REPLICA_GOAL[kind], True, ratio, "1 replica",
            f"{_describe('1 replica', loads[(kind, 1)])}; {_describe('2 replicas', loads[(kind, 2)])}", reps))
    ratio = rps[("postgresql", 1)] / rps[("sqlite", 1)]
    results.append(Result("scale", "requests/s, PostgreSQL ÷ SQLite (1 replica)", ratio, "x", 0.7, True, ratio,
                          "SQLite", f"{_describe('PostgreSQL', loads[('postgresql', 1)])}; "
                                    f"{_describe('SQLite', loads[('sqlite', 1)])}", reps))
    for kind in ("postgresql", "sqlite"):
        a, b = rates[(kind, 1)], rates[(kind, 2)]
        results.append(Result("scale", f"jobs/s, 2 workers ÷ 1 ({kind}, scripted agent)", b / a, "x",
                              WORKER_GOAL[kind], True,
                              b / a, "1 worker", f"1 worker {a:.1f} jobs/s, 2 workers {b:.1f} jobs/s ({jobs} jobs)",
                              1 if quick else 2))
    return results


if __name__ == "__main__":
    main("halguru scale-out (replicas, workers, PostgreSQL)", measure, __doc__ or "")
