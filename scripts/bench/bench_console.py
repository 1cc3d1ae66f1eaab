"""The admin console's monitoring page with 10,000 stored runs: ``python scripts/bench/bench_console.py``.

Fills the store with 10,000 finished runs of 6 agents spread over the last 24 hours (statuses, durations and
tokens varied), signs an admin in (a web session) and times ``GET /admin?window=24h`` (every run in the
window: the aggregates scan all of them), ``GET /admin`` (last hour) and the live fragment, in process
(ASGI, no network: the server's own time), against ``GET /v1/agents`` in the same run. Goal: under 300 ms.
Also the newest page of conversations (``GET /v1/conversations``, the console's ``GET /v1/admin/conversations``)
of the same 10,000, against the single ``agent IN (...)`` query the listing used to send, timed interleaved in
the same run (goal: at most a fifth of its time; the HTTP figures are in the detail); and ``GET
/v1/conversations/ID`` of a conversation of 5,000 messages against one of 1 (goal: at most twice its time).
SQLite in a throwaway home; PostgreSQL when ``HALGURU_DATABASE_URL`` names an empty database.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

import _common  # noqa: F401  (isolates HALGURU_HOME before halguru is imported)
from _common import HOME, Result, main, median, scripted_agents, spread

AGENTS = ["support", "sales", "triage", "billing", "docs", "echo"]
STATUSES = ["ok"] * 16 + ["failed", "limited", "cancelled", "interrupted"]


def fill(store: object, n: int) -> None:
    """``n`` finished runs (and a conversation each) in two statements."""
    rng, now = random.Random(7), time.time()
    conversations, runs = [], []
    for i in range(n):
        started = now - rng.random() * 86000  # minutes inside the 24 h window however long the bench takes
        agent = rng.choice(AGENTS)
        status = rng.choice(STATUSES)
        duration = rng.lognormvariate(6.5, 1.0)
        conversations.append((f"conv_b{i:06d}", agent, "bench", started, started + duration / 1000))
        runs.append((f"run_b{i:06d}", f"conv_b{i:06d}", agent, "scripted", "hi", "ok", status,
                     "boom" if status == "failed" else None, started, started + duration / 1000, duration,
                     rng.randint(20, 900), rng.randint(5, 400)))
    with store._tx() as conn:  # type: ignore[attr-defined]
        conn.executemany("INSERT INTO conversations (id, agent, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                         conversations)
        conn.executemany("INSERT INTO runs (id, conversation_id, agent, model, input, output, status, error, "
                         "started, finished, duration_ms, prompt_tokens, completion_tokens) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", runs)


# What list_conversations sent before each agent's newest were read apart (sql_base.newest_conversations): every
# matching conversation gathered, its messages counted, then sorted.
ONE_IN = ("SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS messages "
          f"FROM conversations c WHERE c.agent IN ({','.join('?' * len(AGENTS))}) "
          "ORDER BY c.updated DESC, c.id LIMIT ?")


def timed(client: object, url: str, headers: dict[str, str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url, headers=headers)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return times


def add_messages(store: object, conversation_id: str, count: int) -> str:
    """``count`` messages in the conversation (one statement); its id."""
    with store._tx() as conn:  # type: ignore[attr-defined]
        conn.executemany("INSERT INTO messages (conversation_id, seq, role, content, created) VALUES (?, ?, ?, ?, ?)",
                         [(conversation_id, i, "user" if i % 2 == 0 else "assistant", f"message {i} " * 20,
                           time.time()) for i in range(count)])
    return conversation_id


def timed_call(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(quick: bool) -> list[Result]:
    from fastapi.testclient import TestClient
    from halguru_server import ServerSettings, create_app
    from halguru_server.identity import websessions

    app = create_app(ServerSettings(agents=[scripted_agents(HOME / "agents", AGENTS)], worker=False,
                                    keep_mcp_servers=False))
    state = app.state.halguru
    fill(state.store, 10_000)
    user = state.store.create_user("usr_bench", "bench@example.com", "bench", "admin")
    secret, _ = websessions.issue(state.store, user["id"], state.settings.auth)
    headers = {"Cookie": f"{websessions.COOKIE}={secret}", "Accept": "text/html"}
    repeat = 5 if quick else 25
    with TestClient(app, base_url="http://testserver") as client:
        timed(client, "/admin?window=24h", headers, 2)  # templates compiled, caches warm
        page = timed(client, "/admin?window=24h", headers, repeat)
        hour = timed(client, "/admin", headers, repeat)
        live = timed(client, "/admin/monitoring/live?window=24h", headers, repeat)
        agents = timed(client, "/v1/agents", headers, repeat)
        others = {name: timed(client, f"/admin/{name}", headers, 3) for name in ("analytics", "security", "status")}
        runs = client.get("/v1/monitoring?window=24h", headers=headers).json()["totals"]["runs"]
        long, short = add_messages(state.store, "conv_b000000", 5000), add_messages(state.store, "conv_b000001", 1)
        long_ms, short_ms = [], []
        for _ in range(repeat):  # interleaved
            long_ms += timed(client, f"/v1/conversations/{long}", headers, 1)
            short_ms += timed(client, f"/v1/conversations/{short}", headers, 1)
        listing, search, now, before = [], [], [], []
        for _ in range(repeat):  # interleaved: a slow spell of the machine hits all four alike
            listing += timed(client, "/v1/conversations?limit=20", headers, 1)
            search += timed(client, "/v1/admin/conversations?limit=20", headers, 1)
            now.append(timed_call(lambda: state.store.list_conversations(21, agents=AGENTS)))
            before.append(timed_call(lambda: state.store._rows(ONE_IN, [*AGENTS, 21])))
    assert runs == 10_000, runs
    detail = (f"/admin?window=24h {spread(page, ' ms')}; /admin (1 h) {spread(hour, ' ms')}; live fragment "
              f"{spread(live, ' ms')}; /v1/agents {spread(agents, ' ms')}; {runs} runs in the window; "
              + "; ".join(f"/admin/{name} {median(t):.0f} ms" for name, t in others.items()))
    print(detail, file=sys.stderr)
    lists = (f"list_conversations {spread(now, ' ms', 2)}, the one-IN query {spread(before, ' ms', 2)}; "
             f"GET /v1/conversations {spread(listing, ' ms')}; GET /v1/admin/conversations {spread(search, ' ms')}")
    print(lists, file=sys.stderr)
    return [Result("console", "monitoring page, 10,000 runs (server time)", median(page), "ms", 300.0, False,
                   median(page) / median(agents), "vs /v1/agents", detail, repeat),
            Result("console", "GET /v1/conversations/ID, 5,000 messages ÷ 1 message",
                   median(long_ms) / median(short_ms), "x", 2.0, False, median(long_ms) / median(short_ms),
                   "of a one-message conversation",
                   f"5,000 messages {spread(long_ms, ' ms')}, 1 message {spread(short_ms, ' ms')}", repeat),
            Result("console", "newest 20 of 10,000 conversations (6 agents) ÷ the one-IN query it replaced",
                   median(now) / median(before), "x", 0.2, False, median(now) / median(before),
                   "of the old query (same store, same run)", lists, repeat)]


if __name__ == "__main__":
    main("Admin console", measure, __doc__ or "")
