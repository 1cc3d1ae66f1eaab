"""The admin console and API at scale: ``python scripts/bench/bench_admin.py [--quick]``.

Fills a store with 100,000 conversations (``--quick``: 5,000), each with one run (a tenth with two) spread over
the last 14 days, two messages and a tool result in every tenth, a run_started event per run and some handoffs,
by bulk insert (COPY on PostgreSQL), then times in process (ASGI, no network: the server's own time), on SQLite
and on PostgreSQL:

- ``GET /v1/analytics`` (15 UTC days, today the last: every run and message of the fill); the closed days come
  from what the store keeps (``analytics_days``), so the first view after the fill, which computes them, is
  printed apart ("first view");
- ``GET /v1/admin/conversations?status=cancelled`` (the last run's status; a rare one: 0.1% of conversations);
- ``GET /v1/runs?status=interrupted`` (a status as read: a lapsed lease reads interrupted);
- ``GET /v1/admin/conversations?q=...`` for text in no title or message (every message must be ruled out), and
  for text in one message, and for a word in about every conversation (``refund``);

each against the first page of ``GET /v1/admin/conversations`` (no filter) in the same run, interleaved, so a
slow spell of the machine hits all alike. Goal: each under 200 ms at 100,000 runs. PostgreSQL: a fresh database
``halguru_bench_<random>`` on ``HALGURU_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``),
dropped at the end; left out when that server cannot be reached.
"""

from __future__ import annotations

import os
import random
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import _common  # noqa: F401  (isolates HALGURU_HOME before halguru is imported)
from _common import HOME, Result, main, median, scripted_agents, spread

ADMIN_URL = os.environ.get("HALGURU_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
AGENTS = ["support", "sales", "triage", "billing", "docs", "echo"]
WORDS = ["order", "refund", "invoice", "shipping", "password", "account", "upgrade", "delivery", "printer", "laptop",
         "screen", "battery"]
RARE = "cancelled"  # 1 conversation in 1,000 ends with it
NEEDLE = "zebracorn"  # in exactly one message
ABSENT = "quokkaphant"  # in none


def rows(n: int) -> dict[str, list[tuple[Any, ...]]]:
    """``n`` conversations with their runs, messages and events, as the tables' rows (deterministic)."""
    rng, now = random.Random(11), time.time()
    out: dict[str, list[tuple[Any, ...]]] = {"conversations": [], "runs": [], "messages": [], "events": []}
    for i in range(n):
        cid, agent = f"conv_a{i:06d}", AGENTS[i % len(AGENTS)]
        started = now - 60 - rng.random() * 13.9 * 86400
        turns = 2 if i % 10 == 0 else 1
        seq = 0
        for turn in range(turns):
            rid = f"run_a{i:06d}_{turn}"
            at = started + turn * 30
            last = turn == turns - 1
            status = RARE if last and i % 1000 == 7 else ("failed" if rng.random() < 0.02 else "ok")
            duration = rng.lognormvariate(6.5, 1.0)
            question = " ".join(rng.choice(WORDS) for _ in range(12)) + (f" {NEEDLE}" if i == n // 2 else "")
            answer = " ".join(rng.choice(WORDS) for _ in range(30))
            out["runs"].append((rid, cid, agent, "scripted", question, answer, status,
                                "boom" if status == "failed" else None, at, at + duration / 1000, duration,
                                rng.randint(20, 900), rng.randint(5, 400), 0))
            out["messages"].append((cid, seq, "user", question, None, None, rid, at))
            out["messages"].append((cid, seq + 1, "assistant", answer, None, None, rid, at + 1))
            seq += 2
            if i % 10 == 3:
                out["messages"].append((cid, seq, "tool", "42 results", "call_1", rng.choice(WORDS), rid, at + 1))
                seq += 1
            out["events"].append((rid, 0, "run_started", 0, at, '{"type": "run_started"}'))
            if i % 50 == 5:
                out["events"].append((rid, 1, "handoff", 0, at, f'{{"from_agent": "{agent}", "to_agent": "docs"}}'))
        out["conversations"].append((cid, agent, f"chat {i} about {rng.choice(WORDS)}", started, started + 31))
    return out


COLUMNS = {"conversations": "id, agent, title, created, updated",
           "runs": "id, conversation_id, agent, model, input, output, status, error, started, finished, duration_ms, "
                   "prompt_tokens, completion_tokens, test",
           "messages": "conversation_id, seq, role, content, tool_call_id, name, run_id, created",
           "events": "run_id, seq, type, step, ts, data"}


def fill(store: Any, n: int) -> None:
    """The rows in one transaction: ``executemany`` on SQLite, ``COPY`` on PostgreSQL (then ``ANALYZE``, as
    autovacuum would after such a load)."""
    tables = rows(n)
    with store._tx() as conn:
        for table, values in tables.items():
            if hasattr(conn, "raw"):
                with conn.raw.cursor().copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
            else:
                marks = ", ".join("?" * len(values[0]))
                conn.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", values)
    if hasattr(store, "url"):
        with store._autocommit() as conn:
            for table in tables:
                conn.execute(f"ANALYZE {table}")


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    """``None`` for SQLite (the throwaway home's file), or a fresh PostgreSQL database's URL, dropped after."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    name = f"halguru_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def postgres_reachable() -> bool:
    try:
        import psycopg

        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
        return True
    except Exception as exc:  # any failure: the backend is left out, and said so
        print(f"PostgreSQL left out: {exc}", file=sys.stderr)
        return False


COMMON = "refund"  # in most messages
URLS = {"analytics (15 days)": "/v1/analytics?days=15",
        f"conversations by a rare last status ({RARE})": f"/v1/admin/conversations?status={RARE}&limit=20",
        "runs by status interrupted": "/v1/runs?status=interrupted&limit=20",
        "conversations with absent text": f"/v1/admin/conversations?q={ABSENT}&limit=20",
        "conversations with text in one message": f"/v1/admin/conversations?q={NEEDLE}&limit=20",
        f"conversations with a common word ({COMMON})": f"/v1/admin/conversations?q={COMMON}&limit=20"}
BASELINE = "/v1/admin/conversations?limit=20"


def measure_backend(kind: str, n: int, repeat: int) -> list[Result]:
    from fastapi.testclient import TestClient
    from halguru_server import ServerSettings, create_app
    from halguru_server.identity import websessions

    with database(kind) as url:
        if url:
            os.environ["HALGURU_DATABASE_URL"] = url
        else:
            os.environ.pop("HALGURU_DATABASE_URL", None)
        from halguru.config import get_settings

        get_settings.cache_clear()
        app = create_app(ServerSettings(agents=[scripted_agents(HOME / "agents", AGENTS)], worker=False,
                                        keep_mcp_servers=False))
        state = app.state.halguru
        began = time.perf_counter()
        fill(state.store, n)
        filled = time.perf_counter() - began
        user = state.store.create_user(f"usr_bench_{kind}", f"{kind}@example.com", "bench", "admin")
        secret, _ = websessions.issue(state.store, user["id"], state.settings.auth)
        headers = {"Cookie": f"{websessions.COOKIE}={secret}"}
        times: dict[str, list[float]] = {name: [] for name in [*URLS, BASELINE]}
        with TestClient(app, base_url="http://testserver") as client:
            first = timed(lambda: get(client, URLS["analytics (15 days)"], headers))  # computes the closed days
            found = {name: get(client, url, headers) for name, url in URLS.items()}  # warm, and checked
            for _ in range(repeat):  # interleaved
                for name, url in [*URLS.items(), (BASELINE, BASELINE)]:
                    times[name].append(timed(lambda u=url: get(client, u, headers)))
        state.store.close()
    check(found, n)
    base = median(times[BASELINE])
    print(f"{kind}: {n} conversations filled in {filled:.1f} s; analytics' first view {first:.0f} ms; "
          f"baseline {BASELINE} {spread(times[BASELINE], ' ms')}", file=sys.stderr)
    return [Result("admin", f"{kind}: {name}, {n:,} conversations", median(times[name]), "ms", 200.0, False,
                   median(times[name]) / base, "vs the unfiltered first page of conversations",
                   f"{spread(times[name], ' ms')}; unfiltered page {spread(times[BASELINE], ' ms')}", repeat)
            for name in URLS]


def get(client: Any, url: str, headers: dict[str, str]) -> Any:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, (url, response.status_code, response.text[:300])
    return response.json()


def check(found: dict[str, Any], n: int) -> None:
    """What each answer must hold, so a fast wrong answer is not a result."""
    rare, absent, needle = (found[name] for name in list(URLS)[1:2] + list(URLS)[3:5])
    expected_rare = min(20, len(range(7, n, 1000)))
    assert len(rare["data"]) == expected_rare, rare
    assert all(c["last_status"] == RARE for c in rare["data"])
    assert absent["data"] == [], absent
    assert [c["id"] for c in needle["data"]] == [f"conv_a{n // 2:06d}"], needle
    assert sum(day["runs"] for day in found["analytics (15 days)"]["per_day"]) == n + len(range(0, n, 10))
    common = found[f"conversations with a common word ({COMMON})"]["data"]
    assert len(common) == 20 and all(COMMON in (c["title"] + (c["match"] or "")) for c in common), common


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(quick: bool) -> list[Result]:
    n, repeat = (5_000, 3) if quick else (100_000, 9)
    results = measure_backend("sqlite", n, repeat)
    if postgres_reachable():
        results += measure_backend("postgresql", n, repeat)
    return results


if __name__ == "__main__":
    main("Admin console and API at scale", measure, __doc__ or "")
