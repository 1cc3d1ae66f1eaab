"""The console's search by a rare status reads an index, not every conversation (both backends), and finds what
the scan found, past the candidates' cap too."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from halguru.store import sql_console
from halguru.store.sqlite import SQLiteStore
from halguru.store.sqlite_base import _fold
from tests.store.test_console_store import _conversation

N = 3000


def _fill(store, n: int = N) -> None:
    """``n`` conversations of two messages and one ``ok`` run each (one statement a table); the middle one's last
    run ``cancelled`` and its question holds "zebracorn"."""
    now = time.time()
    conversations = [(f"conv_s{i:05d}", "support", f"chat {i}", now - i, now - i) for i in range(n)]
    runs = [(f"run_s{i:05d}", f"conv_s{i:05d}", "support", "scripted", "q", "cancelled" if i == n // 2 else "ok",
             now - i) for i in range(n)]
    messages = [(f"conv_s{i:05d}", seq, role, f"order {i} refund" + (" zebracorn" if i == n // 2 and seq == 0 else ""),
                 now - i) for i in range(n) for seq, role in ((0, "user"), (1, "assistant"))]
    with store._tx() as conn:
        conn.executemany("INSERT INTO conversations (id, agent, title, created, updated) VALUES (?, ?, ?, ?, ?)",
                         conversations)
        conn.executemany("INSERT INTO runs (id, conversation_id, agent, model, input, status, started) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", runs)
        conn.executemany("INSERT INTO messages (conversation_id, seq, role, content, created) VALUES (?, ?, ?, ?, ?)",
                         messages)


def _work(store: SQLiteStore, call: Callable[[], object]) -> tuple[int, int]:
    """What ``call`` cost on this thread's connection, whatever the machine's speed: SQLite's virtual machine steps
    (in hundreds) and the calls of ``fold`` (Python's str.lower, once a row a folded ``LIKE`` reads)."""
    steps, folds = [0], [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    def fold(value: object) -> object:
        folds[0] += 1
        return _fold(value)

    conn = store._conn()
    conn.set_progress_handler(tick, 100)
    conn.create_function("fold", 1, fold, deterministic=True)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 0)
        conn.create_function("fold", 1, _fold, deterministic=True)
    return steps[0], folds[0]


def test_a_rare_status_costs_about_what_the_first_page_does(tmp_path: Path) -> None:
    """With 3,000 conversations a search by a status only one has, or none, read every conversation's last run (35
    times the first page's steps; 0.5-3 s with 100,000 conversations); now the runs by status name the few."""
    store = SQLiteStore(tmp_path / "halguru.db")
    try:
        _fill(store)
        page, _ = _work(store, lambda: store.search_conversations(limit=21))
        for filters, found in (({"status": "cancelled"}, [f"conv_s{N // 2:05d}"]), ({"status": "interrupted"}, [])):
            assert [r["id"] for r in store.search_conversations(limit=21, **filters)] == found, filters
            steps, folds = _work(store, lambda f=filters: store.search_conversations(limit=21, **f))
            assert steps <= 2 * page and folds == 0, (filters, steps, folds, page)
    finally:
        store.close()


@pytest.mark.parametrize("cap", [1000, 1])
def test_a_search_by_status_finds_what_the_scan_found(store, raw_sql, monkeypatch, cap: int) -> None:
    """The last run's status counts, not an earlier one's; a lapsed lease reads interrupted; with other filters and
    pages; past the cap (``cap=1``: every status with more than one candidate) the search walks the conversations
    as before."""
    monkeypatch.setattr(sql_console, "CANDIDATES", cap)
    _conversation(store, "conv_000001", "support", "one", status="cancelled")
    _conversation(store, "conv_000002", "support", "two", status="cancelled")
    _conversation(store, "conv_000003", "sales", "three", status="cancelled")
    store.start_run("run_000001bb", "conv_000001", "support", "scripted", "again")  # its last run: running
    raw_sql("UPDATE runs SET lease_expires = 1 WHERE id = 'run_000001bb'")  # ... whose lease lapsed
    assert sorted(r["id"] for r in store.search_conversations(status="cancelled")) == ["conv_000002", "conv_000003"]
    assert [r["id"] for r in store.search_conversations(status="interrupted")] == ["conv_000001"]
    assert [r["id"] for r in store.search_conversations(status="running")] == []
    assert [r["id"] for r in store.search_conversations(status="cancelled", text="two")] == ["conv_000002"]
    assert [r["id"] for r in store.search_conversations(status="cancelled", agents=["sales"])] == ["conv_000003"]
    assert [r["id"] for r in store.search_conversations(status="failed")] == []
    page = store.search_conversations(status="cancelled", limit=1)
    rest = store.search_conversations(status="cancelled", limit=1, after=(page[0]["updated"], page[0]["id"]))
    assert sorted([page[0]["id"], rest[0]["id"]]) == ["conv_000002", "conv_000003"]
