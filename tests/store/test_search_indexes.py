"""The console's search by a rare status or a rare text reads indexes, not every conversation (both backends), and
finds what the scan found: the same conversations, whatever the text's characters, past the candidates' cap too."""

from __future__ import annotations

import sqlite3
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
    """``n`` conversations of two messages and one ``ok`` run each (one statement a table), but every hundredth's
    run ``cancelled`` (from the 50th); the middle one's question holds "zebracorn"."""
    now = time.time()
    conversations = [(f"conv_s{i:05d}", "support", f"chat {i}", now - i, now - i) for i in range(n)]
    runs = [(f"run_s{i:05d}", f"conv_s{i:05d}", "support", "scripted", "q", "cancelled" if i % 100 == 50 else "ok",
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
    """With 3,000 conversations a search by a status 30 have, or none, read every conversation's last run (35 times
    the first page's steps; 0.5-3 s with 100,000 conversations); now the runs by status name the few, and drive
    the query when the agents the caller may read are named too (the agents' index walked all of theirs)."""
    store = SQLiteStore(tmp_path / "halguru.db")
    try:
        _fill(store)
        page, _ = _work(store, lambda: store.search_conversations(limit=21))
        cancelled = [f"conv_s{i:05d}" for i in range(50, 2150, 100)]  # the newest 21
        for filters, found in (({"status": "cancelled"}, cancelled), ({"status": "interrupted"}, []),
                               ({"status": "cancelled", "agents": ["support"]}, cancelled)):
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


def test_a_rare_or_absent_text_costs_a_fraction_of_a_scan(tmp_path: Path) -> None:
    """With 3,000 conversations a search for a text in one message, or in none, folded every message and title in
    Python (9,000 calls, 32 times the first page's steps; 0.7-1.6 s with 100,000 conversations); now the full-text
    index names the messages that may hold it and SQLite's own LIKE the titles."""
    store = SQLiteStore(tmp_path / "halguru.db")
    try:
        _fill(store)
        page, _ = _work(store, lambda: store.search_conversations(limit=21))
        for text, found in (("Zebracorn", [f"conv_s{N // 2:05d}"]), ("quokkaphant", [])):
            for agents in (None, ["support"]):  # the console's search names the agents its caller may read
                assert [r["id"] for r in store.search_conversations(limit=21, text=text, agents=agents)] == found
                steps, folds = _work(store, lambda t=text, a=agents: store.search_conversations(limit=21, text=t,
                                                                                                agents=a))
                assert steps <= 15 * page and folds <= 10, (text, agents, steps, folds, page)
    finally:
        store.close()


def test_the_trigram_index_answers_the_searchs_like_on_postgres(new_postgres_database) -> None:
    """pg016's indexes are on the very expressions the search folds with (the planner uses them only then)."""
    from halguru.store.postgres import PostgresStore

    store = PostgresStore(new_postgres_database())
    try:
        indexes = ["message_text", "conversation_titles"]
        for (select, params), index in zip(store._text_sources("quokkaphant"), indexes, strict=True):
            with store._tx() as conn:
                conn.execute("SET LOCAL enable_seqscan = off")
                plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {select}", params).fetchall())
            assert index in plan, plan
    finally:
        store.close()


@pytest.mark.parametrize("cap", [1000, 1])
def test_searches_through_the_indexes_find_what_the_scan_found(store, raw_sql, monkeypatch, cap: int) -> None:
    """Texts the full-text index cannot answer alone (short ones, beyond ASCII, a final "i" that may be a Turkish
    "İ") are scanned; quotes and LIKE's characters are text; a title matches; past the cap (``cap=1``: every
    search with more than one candidate) the search walks the conversations as before."""
    monkeypatch.setattr(sql_console, "CANDIDATES", cap)
    _conversation(store, "conv_000001", "support", 'He said "50% off_now" at the \u212aELVIN ǅemal STRASSE')
    _conversation(store, "conv_000002", "support", "TAXİ marks the spot, ΚΟΣΜΟΣ", status="cancelled")
    _conversation(store, "conv_000003", "sales", "nothing here", status="cancelled")
    raw_sql("UPDATE conversations SET title = 'Quarterly Refund' WHERE id = 'conv_000003'")
    expected = {'"50% off_now"': ["conv_000001"], "0% off": ["conv_000001"], "50_": [], "kelvin": ["conv_000001"],
                "\u212aelvin": ["conv_000001"], "ǆemal": ["conv_000001"], "strasse": ["conv_000001"],
                "taxi": ["conv_000002"], "xi": ["conv_000002"], "Xİ": ["conv_000002"], "κοσμος": ["conv_000002"],
                "quarterly refund": ["conv_000003"], "REFUND": ["conv_000003"], "absent text": [], "spot": [
                    "conv_000002"], "the answer": ["conv_000001", "conv_000002", "conv_000003"]}
    for text, ids in expected.items():
        assert sorted(r["id"] for r in store.search_conversations(text=text)) == ids, text
    assert [r["id"] for r in store.search_conversations(status="cancelled", text="spot")] == ["conv_000002"]
    assert [r["id"] for r in store.search_conversations(text="the answer", agents=["sales"])] == ["conv_000003"]
    page = store.search_conversations(text="the answer", limit=2)
    rest = store.search_conversations(text="the answer", limit=2, after=(page[-1]["updated"], page[-1]["id"]))
    assert sorted(r["id"] for r in [*page, *rest]) == ["conv_000001", "conv_000002", "conv_000003"]
    raw_sql("INSERT INTO messages (conversation_id, seq, role, content, created) VALUES (?, ?, ?, ?, ?)",
            ("conv_000003", 9, "user", "a walrus wrote this, not halguru", time.time()))  # another program
    assert [r["id"] for r in store.search_conversations(text="walrus")] == ["conv_000003"]
    raw_sql("DELETE FROM messages WHERE seq = 9")
    assert [r["id"] for r in store.search_conversations(text="walrus")] == []


def test_m023_indexes_the_messages_already_stored_and_a_copy_indexes_its_own(tmp_path: Path) -> None:
    """A store made before m023 gets its messages indexed as it migrates; `halguru db copy` into a new SQLite file
    fills that file's index as it inserts."""
    from halguru.store.admin import copy_database
    from halguru.store.migration_runner import apply
    from halguru.store.migrations import MIGRATIONS

    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        apply(conn, MIGRATIONS[:-1])
    store = SQLiteStore(old, migrate=False)
    _conversation(store, "conv_000001", "support", "an old zebracorn")
    store.close()
    store = SQLiteStore(old)
    assert [r["id"] for r in store.search_conversations(text="zebracorn")] == ["conv_000001"]
    assert store._has_message_text()
    store.close()
    copy_database(f"sqlite:{old}", f"sqlite:{tmp_path / 'new.db'}")
    copied = SQLiteStore(tmp_path / "new.db")
    try:
        assert copied._has_message_text()
        assert [r["id"] for r in copied.search_conversations(text="zebracorn")] == ["conv_000001"]
        assert copied._rows("SELECT rowid FROM message_text WHERE message_text MATCH '\"zebracorn\"'") != []
    finally:
        copied.close()


def test_pg014_indexes_a_database_made_before_it(new_postgres_database) -> None:
    """An existing database gets both indexes over the rows it holds, and its search finds them."""
    from halguru.store.postgres import PostgresStore

    url = new_postgres_database()
    store = PostgresStore(url)
    with store._tx() as conn:
        for statement in ("DROP INDEX message_text", "DROP INDEX conversation_titles",
                          "DELETE FROM migrations WHERE name = 'pg016_message_text'"):
            conn.execute(statement)
    _conversation(store, "conv_000001", "support", "an old zebracorn")
    store.close()
    store = PostgresStore(url)
    try:
        names = {r["indexname"] for r in store._rows("SELECT indexname FROM pg_indexes WHERE tablename IN "
                                                     "('messages', 'conversations')")}
        assert {"message_text", "conversation_titles"} <= names
        assert [r["id"] for r in store.search_conversations(text="Zebracorn")] == ["conv_000001"]
    finally:
        store.close()


def test_a_sqlite_without_the_trigram_tokenizer_searches_by_scanning(tmp_path: Path, monkeypatch) -> None:
    """SQLite before 3.34 (or built without FTS5): m023 makes no index, and the search finds the same."""
    from halguru.store import migrations

    monkeypatch.setattr(migrations, "has_trigram", lambda conn: False)
    store = SQLiteStore(tmp_path / "halguru.db")
    try:
        _conversation(store, "conv_000001", "support", "a zebracorn here")
        assert not store._has_message_text()
        assert [r["id"] for r in store.search_conversations(text="ZEBRACORN")] == ["conv_000001"]
        assert [r["id"] for r in store.search_conversations(text="quokka")] == []
    finally:
        store.close()


def test_a_common_word_tests_the_newest_conversations_first_and_finds_what_the_scan_found(store, monkeypatch) -> None:
    """Past the candidates' cap the newest ``WALK`` conversations are tested first (PostgreSQL; SQLite tests them
    newest first anyway); when they hold less than a page (a word only in older ones, or a last page) the search
    reads on as before: the same pages either way."""
    monkeypatch.setattr(sql_console, "CANDIDATES", 1)
    monkeypatch.setattr(sql_console, "WALK", 3)
    _fill(store, 10)
    newest = [f"conv_s{i:05d}" for i in range(10)]
    assert [r["id"] for r in store.search_conversations(text="refund", limit=2)] == newest[:2]  # in the newest 3
    assert [r["id"] for r in store.search_conversations(text="refund", limit=4)] == newest[:4]  # read on
    page = store.search_conversations(text="Refund", limit=2, after=(time.time() - 1.5, "conv_s00001"))
    assert [r["id"] for r in page] == newest[2:4] and all("refund" in r["match"] for r in page)
    assert [r["id"] for r in store.search_conversations(text="order 9 refund", limit=2)] == ["conv_s00009"]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # PostgreSQL's planner's plan
def test_a_common_word_does_not_read_every_message_holding_it_on_postgres(store, monkeypatch) -> None:
    """The planner hashed every message holding a common word before testing the newest conversation (a search for
    "refund" took 0.6-1.9 s with 100,000 conversations); now each of the newest is tested by its own messages."""
    _fill(store, 1500)
    with store._tx() as conn:
        conn.execute("ANALYZE")
    statements: list[tuple[str, list]] = []
    rows = store._rows
    monkeypatch.setattr(store, "_rows", lambda sql, params=(): statements.append((sql, list(params))) or rows(sql,
                                                                                                             params))
    assert len(store.search_conversations(text="refund", limit=20)) == 20
    sql, params = statements[-1]
    with store._tx() as conn:
        plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN {sql}", params).fetchall())
    assert "hashed SubPlan" not in plan and "message_text" not in plan, plan
