"""Trace listing with many stored runs: ``python scripts/bench/bench_logs.py [--quick] [--postgres]``.

A store holding N runs (100,000; 20,000 with --quick), the newest 40% made by `halguru test` (``test`` in their
run_started metadata, as the test runner records them), written straight in SQL in one transaction. Measured
in this process (median of several calls):

- ``list_runs(test_runs=False)`` (what `halguru logs` shows: test runs hidden) ÷ ``list_runs()`` (every run, the
  baseline): hiding test runs must not cost more as test runs pile up (goal ≤ 2x);
- ``list_runs(agent=…, test_runs=False)`` and ``list_runs(status='failed', test_runs=False)`` ÷ the baseline;
- ``prune_runs`` deleting the older half, as ms per 1,000 runs deleted (goal ≤ 150 ms), ÷ the fill's ms per 1,000
  runs (the same rows written in bulk SQL, one transaction);
- `halguru logs` wall time ÷ `halguru --help` (the CLI's start-up is the floor) (goal ≤ 2x).

``--postgres``: the same on a fresh database ``halguru_bench_<random>`` on ``HALGURU_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``), dropped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import _common
from _common import HOME, Result, median, spread

HALGURU = str(Path(sys.executable).parent / "halguru")
PG_ADMIN = os.environ.get("HALGURU_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AGENTS = ("support", "triage", "writer", "coder", "planner")


def _columns(store: Any, conn: Any) -> set[str]:
    if store.location.startswith("postgres"):
        rows = conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'")
    else:
        rows = conn.execute("SELECT name FROM pragma_table_info('runs')")
    return {str(r[0]) for r in rows}


def fill(store: Any, count: int, test_share: float = 0.4) -> None:
    """``count`` finished runs, one a second up to now, the newest ``test_share`` of them test runs (as the
    store records them: a ``test`` column where the schema has one), each with run_started and run_finished."""
    now, tests_from = time.time() - count, int(count * (1 - test_share))
    with store._tx() as conn:
        flagged = "test" in _columns(store, conn)
        for start in range(0, count, 2000):
            runs, events = [], []
            for i in range(start, min(count, start + 2000)):
                rid, conv, test = f"run_{i:017d}", f"conv_{i:017d}", i >= tests_from
                status = "failed" if i % 17 == 0 else "ok"
                agent = AGENTS[i % len(AGENTS)]
                runs.append((rid, conv, agent, "scripted", f"question {i}", "answer", status, now + i, now + i + 0.5,
                             500.0, 1, 10, 5, *((1 if test else 0,) if flagged else ())))
                meta = {"test": True, "test_case": "t.yaml::case"} if test else {}
                started = {"type": "run_started", "run_id": rid, "seq": 0, "step": 0, "ts": now + i, "agent": agent,
                           "model": "scripted", "input": f"question {i}", "conversation_id": conv, "metadata": meta}
                finished = {"type": "run_finished", "run_id": rid, "seq": 1, "step": 0, "ts": now + i + 0.5,
                            "status": status, "output": "answer"}
                events += [(rid, 0, "run_started", 0, now + i, json.dumps(started)),
                           (rid, 1, "run_finished", 0, now + i + 0.5, json.dumps(finished))]
            columns = "id, conversation_id, agent, model, input, output, status, started, finished, duration_ms, " \
                      "steps, prompt_tokens, completion_tokens" + (", test" if flagged else "")
            marks = ", ".join("?" * len(runs[0]))
            _many(conn, "INSERT INTO conversations (id, agent, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                  [(r[1], r[2], r[4], r[7], r[8]) for r in runs])
            _many(conn, f"INSERT INTO runs ({columns}) VALUES ({marks})", runs)
            _many(conn, "INSERT INTO events (run_id, seq, type, step, ts, data) VALUES (?, ?, ?, ?, ?, ?)", events)
    if store.location.startswith("postgres"):
        with store._autocommit() as conn:
            conn.execute("ANALYZE")


def _many(conn: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    if hasattr(conn, "executemany"):
        conn.executemany(sql, rows)
    else:
        for row in rows:
            conn.execute(sql, row)


def timed_ms(call: Callable[[], Any], repeat: int) -> list[float]:
    call()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def wall_ms(args: list[str], env: dict[str, str], repeat: int) -> list[float]:
    def once() -> None:
        subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return timed_ms(once, repeat)


@contextmanager
def open_bench_store(postgres: bool) -> Iterator[tuple[Any, dict[str, str]]]:
    """The store, and the environment a `halguru` subprocess needs to open the same one."""
    env = {**os.environ, "HALGURU_HOME": str(HOME)}
    if not postgres:
        from halguru.store import open_store

        yield open_store(), env
        return
    import psycopg

    from halguru.store.postgres import PostgresStore

    name = f"halguru_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    store = PostgresStore(url)
    try:
        yield store, {**env, "HALGURU_DATABASE_URL": url}
    finally:
        store.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def measure(quick: bool, postgres: bool = False) -> list[Result]:
    count, repeat = (20_000, 5) if quick else (100_000, 9)
    backend = "PostgreSQL" if postgres else "SQLite"
    results: list[Result] = []
    with open_bench_store(postgres) as (store, env):
        started = time.perf_counter()
        fill(store, count)
        filled_s = time.perf_counter() - started
        base = timed_ms(lambda: store.list_runs(limit=20), repeat)
        cases = {"hidden tests": lambda: store.list_runs(limit=20, test_runs=False),
                 "--agent, hidden tests": lambda: store.list_runs(limit=20, agent="triage", test_runs=False),
                 "--status failed, hidden tests": lambda: store.list_runs(limit=20, status="failed", test_runs=False)}
        for label, call in cases.items():
            took = timed_ms(call, repeat)
            results.append(Result(
                bench="logs", metric=f"{backend} list_runs, {label} ÷ all runs", value=median(took) / median(base),
                unit="x", goal=2.0, higher_is_better=False, ratio=median(took) / median(base),
                baseline="of list_runs() (all runs)",
                detail=f"{spread(took, ' ms', 2)} vs {spread(base, ' ms', 2)}; {count:,} runs "
                       f"({filled_s:.1f}s to fill)",
                runs=repeat))
        cli_repeat = 3 if quick else 5
        logs = wall_ms([HALGURU, "logs"], env, cli_repeat)
        helps = wall_ms([HALGURU, "--help"], env, cli_repeat)
        results.append(Result(
            bench="logs", metric=f"{backend} `halguru logs` ÷ `halguru --help`", value=median(logs) / median(helps),
            unit="x", goal=2.0, higher_is_better=False, ratio=median(logs) / median(helps),
            baseline="of `halguru --help`", detail=f"logs {spread(logs, ' ms')}, --help {spread(helps, ' ms')}",
            runs=cli_repeat))
        before = time.time() - count / 2  # the older half
        started = time.perf_counter()
        deleted = store.prune_runs(before)
        pruned_ms = (time.perf_counter() - started) * 1000
        per_k = pruned_ms / max(deleted, 1) * 1000
        filled_per_k = filled_s * 1000 / count * 1000
        results.append(Result(
            bench="logs", metric=f"{backend} prune_runs, ms per 1,000 runs deleted", value=per_k, unit="ms",
            goal=150.0, higher_is_better=False, ratio=per_k / filled_per_k,
            baseline="of writing them (the fill's ms per 1,000 runs)",
            detail=f"{deleted:,} runs in {pruned_ms:.0f} ms; fill {filled_per_k:.0f} ms per 1,000", runs=1))
    return results


if __name__ == "__main__":
    use_pg = "--postgres" in sys.argv
    if use_pg:
        sys.argv.remove("--postgres")
    _common.main("Trace listing", lambda quick: measure(quick, use_pg), __doc__ or "")
