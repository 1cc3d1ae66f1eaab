"""The console's conversation queries on both backends: search filters, messages with authors, take-over
state and the retention query."""

from __future__ import annotations

import time

from halguru.agents.events import RunFinished
from halguru.models.base import Message


def _conversation(store, cid: str, agent: str, text: str, *, owner: str | None = None, status: str = "ok",
                  updated: float | None = None, raw_sql=None) -> None:
    store.create_conversation(cid, agent, f"title of {cid}", owner=owner)
    run = f"run_{cid[-6:]}aa"
    store.start_run(run, cid, agent, "scripted", text, owner=owner)
    done = RunFinished(run_id=run, seq=0, status=status, output="the answer")
    store.finish_run(run, cid, done.model_dump(), [done],
                     [Message(role="user", content=text), Message(role="assistant", content="the answer")])
    if updated is not None:
        raw_sql("UPDATE conversations SET updated = ? WHERE id = ?", (updated, cid))


def test_search_filters_by_text_agent_owner_status_channel_and_date(store, raw_sql) -> None:
    now = time.time()
    _conversation(store, "conv_000001", "support", "My parcel 50% late_ish", owner="user:a")
    _conversation(store, "conv_000002", "sales", "A quote for PARCEL boxes", owner="user:b", status="failed")
    _conversation(store, "conv_000003", "support", "hello there", owner="user:b", updated=now - 40 * 86400,
                  raw_sql=raw_sql)
    store.thread_conversation("twilio", "support", "+1555", title="sms")

    def ids(**filters) -> list[str]:
        return sorted(r["id"] for r in store.search_conversations(**filters) if r["id"].startswith("conv_0"))

    assert ids(text="parcel") == ["conv_000001", "conv_000002"]
    assert ids(text="50%") == ["conv_000001"] and ids(text="5_%") == [] and ids(text="late_ish") == ["conv_000001"]
    assert ids(text="parcel", agents=["sales"]) == ["conv_000002"]
    assert ids(owner="user:b") == ["conv_000002", "conv_000003"]
    assert ids(status="failed") == ["conv_000002"]
    assert ids(since=now - 86400) == ["conv_000001", "conv_000002"]
    assert ids(until=now - 86400) == ["conv_000003"]
    assert ids(agents=[]) == []
    found = store.search_conversations(text="PARCEL", agents=["support"])
    assert [(r["messages"], r["last_status"], r["channel"], r["match"]) for r in found] == \
        [(2, "ok", None, "My parcel 50% late_ish")]
    sms = store.search_conversations(channel="twilio")
    assert [r["channel"] for r in sms] == ["twilio"] and sms[0]["last_status"] is None
    assert "conv_000001" in {r["id"] for r in store.search_conversations(channel="api")}
    assert sms[0]["id"] not in {r["id"] for r in store.search_conversations(channel="api")}


def test_take_over_holds_messages_and_hands_back(store) -> None:
    _conversation(store, "conv_000010", "support", "hi")
    assert store.append_message("conv_000010", "user", "anyone?", if_taken_over=True) is None  # the agent answers
    assert store.take_over("conv_000010", "user:op1") == "user:op1"
    assert store.take_over("conv_000010", "user:op2") == "user:op1"  # another operator's stays theirs
    row = store.get_conversation("conv_000010")
    assert row["taken_over_by"] == "user:op1" and row["taken_over_since"] is not None
    assert store.append_message("conv_000010", "user", "anyone?", if_taken_over=True) == 2
    assert store.append_message("conv_000010", "assistant", "A human here.", author="user:op1") == 3
    messages = store.conversation_messages("conv_000010")
    assert [(m["seq"], m["role"], m["author"]) for m in messages] == \
        [(0, "user", None), (1, "assistant", None), (2, "user", None), (3, "assistant", "user:op1")]
    assert [m.content for m in store.get_messages("conv_000010")][-1] == "A human here."
    assert store.take_over("conv_000010", None) is None
    assert store.get_conversation("conv_000010")["taken_over_by"] is None
    assert store.take_over("conv_nosuch", "user:op1") == ""
    assert store.append_message("conv_nosuch", "user", "x") is None


def test_a_conversations_tail_is_read_from_its_end(store) -> None:
    """The console's page of a long conversation: the last messages before a seq, in order, on both backends."""
    _conversation(store, "conv_000030", "support", "hi")
    for i in range(5):
        store.append_message("conv_000030", "user", f"more {i}")
    assert [m["seq"] for m in store.conversation_tail("conv_000030", 3)] == [4, 5, 6]
    assert [m["content"] for m in store.conversation_tail("conv_000030", 3, before=4)] == [
        "the answer", "more 0", "more 1"]
    assert store.conversation_tail("conv_000030", 3, before=0) == []
    assert store.conversation_tail("conv_nosuch", 3) == []


def test_expired_conversations_leave_out_recent_and_taken_over_ones(store, raw_sql) -> None:
    old = time.time() - 10 * 86400
    _conversation(store, "conv_000020", "support", "old", updated=old, raw_sql=raw_sql)
    _conversation(store, "conv_000021", "support", "old but held", updated=old, raw_sql=raw_sql)
    _conversation(store, "conv_000022", "support", "new")
    _conversation(store, "conv_000023", "sales", "old, other agent", updated=old, raw_sql=raw_sql)
    store.take_over("conv_000021", "user:op")
    raw_sql("UPDATE conversations SET updated = ? WHERE id = ?", (old, "conv_000021"))
    assert store.expired_conversations("support", time.time() - 86400) == ["conv_000020"]


def test_search_folds_case_beyond_ascii(store) -> None:
    """As Python's str.lower: on PostgreSQL the database's locale (C.UTF-8 here) wrote no final sigma."""
    _conversation(store, "conv_000004", "support", "Inscription à l'École Normale, ÅRHUS, ΚΟΣΜΟΣ")
    for text in ("école", "ÉCOLE", "École Normale", "århus", "κοσμος"):
        assert [r["id"] for r in store.search_conversations(text=text)] == ["conv_000004"], text


def test_search_folds_case_beyond_ascii_in_a_database_made_with_the_c_locale(new_postgres_database) -> None:
    """`initdb --locale=C` (or CREATE DATABASE ... LC_CTYPE 'C'): PostgreSQL's lower() there folds ASCII only, so
    "école" found no "École" on PostgreSQL where SQLite (Python's str.lower) finds it."""
    from halguru.store.postgres import PostgresStore

    store = PostgresStore(new_postgres_database(locale="C"))
    try:
        _conversation(store, "conv_000004", "support", "Inscription à l'École Normale, ÅRHUS, ΣΟΦΊΑ")
        for text in ("école", "ÉCOLE", "École Normale", "århus", "σοφία"):
            assert [r["id"] for r in store.search_conversations(text=text)] == ["conv_000004"], text
        store.create_user("usr_1", "zoe@example.com", "Zoé Ångström", "user")
        assert [u["id"] for u in store.list_users(text="ÅNGSTRÖM")] == ["usr_1"]
    finally:
        store.close()


def test_a_history_and_added_messages_keep_their_tool_calls_and_results(store) -> None:
    """An OpenAI client's history with a tool loop, as a new conversation and as messages added to one."""
    from halguru.models.base import ToolCallRequest

    call = Message(role="assistant", tool_calls=[ToolCallRequest(id="c1", name="weather", arguments={"city": "Oslo"})])
    result = Message(role="tool", content="-3 C", tool_call_id="c1", name="weather")
    history = [Message(role="user", content="weather?"), call, result]
    store.create_conversation("conv_000020", "support", "t", history)
    assert store.get_messages("conv_000020") == history
    store.create_conversation("conv_000021", "support", "t")
    for message in history:
        store.append_message("conv_000021", message.role, message.content, tools=message)
    assert store.get_messages("conv_000021") == history


def test_a_common_last_status_of_several_agents_is_one_walk_of_the_newest(tmp_path, monkeypatch) -> None:
    """The console's `status=failed` (2% of 100,000 conversations, past the candidates read from the runs'
    index) walked each agent's conversations apart, newest first, testing each one's last status until that
    agent alone filled a page: six agents, six walks, 150-430 ms. It is one walk of the newest conversations
    (the ``updated`` index), the agents compared on each, and finds the same page."""
    import halguru.store.sql_console as console
    from halguru.store import SQLiteStore

    monkeypatch.setattr(console, "CANDIDATES", 2)  # "failed" is a common status here
    store = SQLiteStore(tmp_path / "halguru.db")
    for i, agent in enumerate(["support", "sales", "triage"] * 2):
        _conversation(store, f"conv_{i:06d}", agent, "hello", status="failed" if i != 3 else "ok")
    read: list[tuple[str, list]] = []
    rows = store._rows
    monkeypatch.setattr(store, "_rows", lambda sql, params=(): read.append((sql, list(params))) or rows(sql, params))
    found = store.search_conversations(agents=["support", "sales"], status="failed", limit=10)
    assert [r["id"] for r in found] == ["conv_000004", "conv_000001", "conv_000000"]
    assert [r["last_status"] for r in found] == ["failed"] * 3
    sql, params = read[-1]
    with store._tx() as conn:
        plan = " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "conversations_updated" in plan and "conversations_agent" not in plan, plan
    store.close()
