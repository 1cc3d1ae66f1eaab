"""The store's typed records: owners, approvals with who decided, checkpoints, listings, API keys. Each test runs
on SQLite and PostgreSQL (the ``store`` fixture) but the one about SQLite's write lock."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from halguru.agents.events import RunFinished
from halguru.errors import StoreError
from halguru.models.base import Message, ToolCallRequest
from halguru.store import SQLiteStore, Store, sql_keys


def _finish(store: Store, run_id: str, conversation: str, status: str = "ok") -> None:
    done = RunFinished(run_id=run_id, seq=0, status=status, output="")
    store.finish_run(run_id, conversation, done.model_dump(), [done], [])


def _pause(store: Store, run_id: str, owner: str | None, agent: str = "agent") -> None:
    store.start_run(run_id, "conv_" + run_id, agent, "scripted", "ship it", owner=owner)
    call = ToolCallRequest(id="c1", name="ship", arguments={"order": "A"})
    store.save_pending(run_id, "conv_" + run_id, agent, "/agents/a", None, "ship it", call.model_dump_json(), "[]",
                       owner)
    _finish(store, run_id, "conv_" + run_id, "paused")


def test_owners_are_recorded_and_filter_listings(store: Store) -> None:
    store.create_conversation("conv_a", "agent", "mine", owner="key:a")
    store.start_run("run_a0000001", "conv_a", "agent", "scripted", "hi", owner="key:a")
    store.start_run("run_b0000001", "conv_b", "agent", "scripted", "hi", owner="key:b")
    store.start_run("run_l0000001", "conv_l", "agent", "scripted", "hi")  # the local CLI user
    assert store.get_conversation("conv_b")["owner"] == "key:b"  # created by start_run, owned alike
    assert [c["id"] for c in store.list_conversations(owner="key:a")] == ["conv_a"]
    assert len(store.list_conversations()) == 3
    assert [r["id"] for r in store.list_runs(owner="key:b")] == ["run_b0000001"]
    assert store.get_run("run_l0000001")["owner"] is None
    _pause(store, "run_p0000001", "key:a")
    _pause(store, "run_p0000002", "key:b", agent="other")
    assert [p["run_id"] for p in store.list_pending(owner="key:a")] == ["run_p0000001"]
    assert [p["run_id"] for p in store.list_pending(agents=["other"])] == ["run_p0000002"]
    assert store.list_pending(agents=[]) == []


def test_run_agents_names_each_agent_with_runs_once_sorted(store: Store) -> None:
    assert store.run_agents() == []
    for run_id, agent in (("run_z0000001", "zeta"), ("run_a0000001", "Alpha"), ("run_z0000002", "zeta"),
                          ("run_u0000001", "ünï")):
        store.start_run(run_id, "conv_" + run_id, agent, "scripted", "hi")
    assert store.run_agents() == ["Alpha", "zeta", "ünï"]


def test_a_decision_records_who_when_and_the_arguments_before_and_after(store: Store) -> None:
    _pause(store, "run_p0000001", "key:a")
    _pause(store, "run_p0000002", "key:a")
    assert store.find_approval("run_p0000001")["arguments_before"] == '{"order": "A"}'
    with pytest.raises(StoreError, match="ambiguous"):
        store.find_approval("run_p")
    assert store.find_approval("run_zzz") is None and store.find_approval("") is None
    before = time.time()
    assert store.decide_approval("run_p0000001", "approved", None, "key:admin", {"order": "B"})
    assert not store.decide_approval("run_p0000001", "rejected", "no", "key:a")  # decided once
    row = store.find_approval("run_p0000001")
    assert (row["status"], row["decided_by"], json.loads(row["arguments_after"])) == ("approved", "key:admin",
                                                                                       {"order": "B"})
    assert row["resolved"] is not None and row["resolved"] >= before
    assert store.decide_approval("run_p0000002", "rejected", "too big", "key:a")
    row = store.find_approval("run_p0000002")
    assert (row["run_id"], row["reason"], row["arguments_after"]) == ("run_p0000002", "too big", None)
    store.set_approval_continued_by("run_p0000002", "run_next0001")
    assert store.find_approval("run_p0000002")["continued_by"] == "run_next0001"
    assert store.list_pending() == []


def test_an_approval_without_an_edit_records_the_arguments_that_ran(store: Store) -> None:
    _pause(store, "run_p0000001", None)
    assert store.decide_approval("run_p0000001", "approved", None)
    assert store.find_approval("run_p0000001")["arguments_after"] == '{"order": "A"}'


def test_checkpoints_are_claimed_once(store: Store, store_factory, raw_sql) -> None:
    store.start_run("run_c0000001", "conv_1", "flow", "scripted", "go")
    store.start_checkpoint("run_c0000001", "workflow", "conv_1", "/agents/flow", None, "go")
    store.save_checkpoint("run_c0000001", "step pay ok", {"steps_done": {"pay": "ok"}}, [])
    assert not store.claim_checkpoint("run_c0000001")  # its lease is live: it runs
    store.close()
    raw_sql("UPDATE runs SET lease_expires = 1")  # as if its process died
    store = store_factory(lease=30)
    saved = store.get_checkpoint("run_c0000001")
    assert saved is not None and (saved["label"], saved["state"]) == ("step pay ok", {"steps_done": {"pay": "ok"}})
    listed = store.list_runs(status="interrupted")
    assert [(r["id"], r["kind"], r["checkpoint"]) for r in listed] == [("run_c0000001", "workflow", "step pay ok")]
    assert store.claim_checkpoint("run_c0000001")
    assert not store.claim_checkpoint("run_c0000001")
    store.set_checkpoint_resumed_by("run_c0000001", None)  # nothing ran: it may be resumed again
    assert store.claim_checkpoint("run_c0000001")
    store.set_checkpoint_resumed_by("run_c0000001", "run_c0000002")
    assert store.list_runs()[0]["resumed_by"] == "run_c0000002"
    assert store.get_checkpoint("run_none") is None


def test_a_resume_claim_is_a_lease_its_process_renews_and_a_dead_one_expires(store_factory, raw_sql) -> None:
    """A resume killed between its claim and its continuation's start leaves a claim that expires (it once
    stayed for good: every later resume was refused); while its process lives, the claim is renewed."""
    from halguru.store.records import CLAIMING

    store = store_factory(lease=0.6)
    store.start_run("run_c0000001", "conv_1", "team", "scripted", "go")
    store.start_checkpoint("run_c0000001", "team", "conv_1", "/agents/team", None, "go")
    store.close()
    raw_sql("UPDATE runs SET lease_expires = 1")  # its process died: interrupted
    mine, other = store_factory(lease=0.6), store_factory(lease=0.6)
    assert mine.claim_checkpoint("run_c0000001")
    assert other.get_checkpoint("run_c0000001")["resumed_by"] == CLAIMING
    time.sleep(1.5)  # past the lease: renewed meanwhile, as its process lives
    assert not other.claim_checkpoint("run_c0000001")
    assert other.list_runs()[0]["resumed_by"] == CLAIMING
    mine._stop_leases()  # as if its process had died (first: a renewal after the expiry below would undo it)
    raw_sql("UPDATE checkpoints SET claim_expires = ?", (time.time() - 1,))
    assert other.get_checkpoint("run_c0000001")["resumed_by"] is None
    assert other.list_runs()[0]["resumed_by"] is None
    assert other.claim_checkpoint("run_c0000001")  # taken over, once
    assert not mine.claim_checkpoint("run_c0000001")
    other.set_checkpoint_resumed_by("run_c0000001", "run_c0000002")
    assert other.get_checkpoint("run_c0000001")["resumed_by"] == "run_c0000002"
    assert not mine.claim_checkpoint("run_c0000001")


def test_a_decided_approval_is_continued_once_and_taken_over_when_its_process_died(store_factory, raw_sql) -> None:
    """A decision claims its continuation (renewed while its process lives); killed before the continuation
    started, the claim expires and one other process takes it over (it once stayed 'approved' with no
    continuation for good)."""
    mine, other = store_factory(lease=0.6), store_factory(lease=0.6)
    _pause(mine, "run_p0000001", None)
    _pause(mine, "run_p0000002", None)
    assert mine.decide_approval("run_p0000001", "approved", None, "key:a")
    time.sleep(1.5)  # past the lease: renewed meanwhile
    assert not other.take_over_approval("run_p0000001")
    mine._stop_leases()  # as if its process had died (first: a renewal after the expiry below would undo it)
    raw_sql("UPDATE approvals SET claim_expires = ? WHERE run_id = 'run_p0000001'", (time.time() - 1,))
    assert other.take_over_approval("run_p0000001")
    assert not mine.take_over_approval("run_p0000001")  # once
    other.release_approval("run_p0000001")  # its continuation could not start either: free at once
    assert mine.take_over_approval("run_p0000001")
    mine.set_approval_continued_by("run_p0000001", "run_next0001")
    raw_sql("UPDATE approvals SET claim_expires = ? WHERE run_id = 'run_p0000001'", (time.time() - 1,))
    assert not other.take_over_approval("run_p0000001")  # continued: nothing to take over
    assert not other.take_over_approval("run_p0000002")  # still pending: decide it
    assert other.decide_approval("run_p0000002", "rejected", "no", continues=False)  # no continuation will come
    other.release_approval("run_p0000002")
    assert not mine.take_over_approval("run_p0000002")
    assert store_factory().find_approval("run_p0000002")["claim_expires"] is None


def test_run_listing_filters_by_status_agents_and_limit(store: Store) -> None:
    for i, (agent, status) in enumerate([("a", "ok"), ("b", "failed"), ("a", "failed"), ("a", None)]):
        store.start_run(f"run_s000000{i}", f"conv_{i}", agent, "scripted", "hi")
        if status:
            _finish(store, f"run_s000000{i}", f"conv_{i}", status)
        time.sleep(0.01)
    assert [r["id"] for r in store.list_runs(status="failed", agents=["a"])] == ["run_s0000002"]
    assert [r["id"] for r in store.list_runs(status="running")] == ["run_s0000003"]
    assert [r["id"] for r in store.list_runs(agent="a", limit=2)] == ["run_s0000003", "run_s0000002"]
    assert store.list_runs(agents=[]) == []
    assert store.get_run("run_s0000001")["status"] == "failed"
    with pytest.raises(StoreError, match="ambiguous"):
        store.get_run("run_s")
    with pytest.raises(StoreError, match="no run"):
        store.get_run("run_S0000001")  # ids are case-sensitive, and _ is no wildcard
    with pytest.raises(StoreError, match="no run"):
        store.get_run("run%")


def test_api_keys_and_last_used_written_at_most_once_a_minute(store: Store, monkeypatch) -> None:
    key = store.create_key("ab12cd34", "ci", "hg_ab12cd34", "h1", ["agent"], expires=None)
    store.create_key("ef56ab78", "ops", "hg_ef56ab78", "h2", scope="admin")
    assert [(k["id"], k["agents"], k["scope"]) for k in store.list_keys()] == [
        ("ab12cd34", ["agent"], "user"), ("ef56ab78", [], "admin")]
    assert store.key_by_hash("h1") == key and store.key_by_hash("nope") is None
    store.touch_key("ab12cd34")
    first = store.key_by_hash("h1")["last_used"]
    assert first is not None
    store.touch_key("ab12cd34")
    assert store.key_by_hash("h1")["last_used"] == first  # not written again within the minute
    monkeypatch.setattr(sql_keys, "TOUCH_EVERY", 0.0)
    time.sleep(0.01)
    store.touch_key("ab12cd34")
    assert store.key_by_hash("h1")["last_used"] > first
    assert store.revoke_keys(["ab12cd34", "ef56ab78"]) == 2
    assert store.revoke_keys(["ab12cd34"]) == 0
    assert all(k["revoked"] for k in store.list_keys())


def test_ping_checks_that_the_database_takes_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    store.ping()
    other = sqlite3.connect(tmp_path / "t.db", isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    monkeypatched = store._conn()  # the store's own test looks inside: a short busy timeout
    monkeypatched.execute("PRAGMA busy_timeout=50")
    with pytest.raises(StoreError, match="not writable"):
        store.ping()
    other.execute("ROLLBACK")
    store.ping()
    store.close()


def test_rate_hits_are_counted_in_a_sliding_window_shared_by_stores(store: Store, store_factory) -> None:
    other = store_factory()  # another worker process's store, same database
    window = 2.0  # the first three hits must land within it, even on a slow machine
    assert store.rate_hit("chat:1.2.3.4", 2, window) is None
    assert other.rate_hit("chat:1.2.3.4", 2, window) is None
    wait = store.rate_hit("chat:1.2.3.4", 2, window)
    assert wait is not None and 0 < wait <= window
    assert other.rate_hit("chat:5.6.7.8", 2, window) is None  # each bucket its own
    time.sleep(wait + 0.05)
    assert other.rate_hit("chat:1.2.3.4", 2, window) is None


def test_rate_hits_from_many_threads_and_stores_never_pass_the_limit(store: Store, store_factory) -> None:
    import threading

    stores = [store, store_factory()]  # two processes' stores; four threads each
    allowed: list[bool] = []
    start = threading.Barrier(8)

    def hit(s: Store) -> None:
        start.wait()
        for _ in range(10):
            allowed.append(s.rate_hit("chat:9.9.9.9", 15, 30) is None)

    threads = [threading.Thread(target=hit, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(allowed) == 80 and sum(allowed) == 15


def test_nul_characters_are_stored_on_every_backend(store) -> None:
    """PostgreSQL text cannot hold NUL, SQLite's can: a NUL in a message (a tool's binary output, say) must not
    fail the run's final write on either."""
    from halguru.agents.events import RunFinished, RunStarted

    store.create_conversation("conv_nul", "echo", "nul\x00title")
    store.start_run("run_nul", "conv_nul", "echo", "scripted", "in\x00put")
    events = [RunStarted(run_id="run_nul", seq=0, conversation_id="conv_nul", agent="echo", model="scripted",
                         input="x"), RunFinished(run_id="run_nul", seq=1, status="ok", output="a\x00b")]
    store.finish_run("run_nul", "conv_nul", {"status": "ok", "output": "a\x00b", "error": None, "steps": 1,
                                             "duration_ms": 1.0, "prompt_tokens": 0, "completion_tokens": 0},
                     events, [Message(role="user", content="in\x00put"), Message(role="assistant", content="a\x00b")])
    assert store.get_run("run_nul")["status"] == "ok"
    assert [m.content.replace("\ufffd", "\x00") for m in store.get_messages("conv_nul")] == ["in\x00put", "a\x00b"]
    assert store.get_events("run_nul")[1]["output"] == "a\x00b"  # an event's JSON keeps its escape
    # NUL in every field of a message, and text that merely looks like an escape, in a later run's finish
    store.start_run("run_nul2", "conv_nul", "echo", "scripted", "again", existing=True)
    call = ToolCallRequest(id="c\x001", name="t\x00ool", arguments={"path": "a\x00b", "raw": "\\u0000"})
    done = RunFinished(run_id="run_nul2", seq=0, status="ok", output="\\u0000")
    store.finish_run("run_nul2", "conv_nul", done.model_dump(), [done],
                     [Message(role="assistant", content="", tool_calls=[call]),
                      Message(role="tool", content="\\u0000 \x00", tool_call_id="c\x001", name="t\x00ool")])
    stored = store.get_messages("conv_nul")[2:]
    assert stored[0].tool_calls[0].arguments == {"path": "a\x00b", "raw": "\\u0000"}
    assert stored[1].content.replace("\ufffd", "\x00") == "\\u0000 \x00"
    assert (stored[1].tool_call_id or "").replace("\ufffd", "\x00") == "c\x001"
    assert store.get_events("run_nul2")[0]["output"] == "\\u0000"


def test_a_long_runs_messages_and_events_keep_their_order_across_insert_chunks(store: Store,
                                                                             monkeypatch) -> None:
    """A run's messages and events are written many rows per statement: their order (and the messages' seqs
    after the conversation's earlier ones) survives chunks, tool calls and empty fields."""
    from halguru.store import sql_runs

    monkeypatch.setattr(sql_runs, "INSERT_ROWS", 3)  # 7 messages and 8 events: chunks of 3, 3 and 1-2
    store.start_run("run_c0000001", "conv_c", "agent", "scripted", "first")
    done = RunFinished(run_id="run_c0000001", seq=0, status="ok", output="a")
    store.finish_run("run_c0000001", "conv_c", done.model_dump(), [done],
                     [Message(role="user", content="first"), Message(role="assistant", content="a")])
    assert [m.content for m in store.start_run("run_c0000002", "conv_c", "agent", "scripted", "second",
                                               existing=True) or []] == ["first", "a"]
    call = ToolCallRequest(id="c1", name="ship", arguments={"order": "A"})
    new = [Message(role="user", content="second"),
           *[m for i in range(3) for m in (Message(role="assistant", content="", tool_calls=[call]),
                                           Message(role="tool", content=f"shipped {i}", tool_call_id="c1",
                                                   name="ship"))]]
    events = [RunFinished(run_id="run_c0000002", seq=i, status="ok", output=str(i)) for i in range(8)]
    store.finish_run("run_c0000002", "conv_c", events[-1].model_dump(), events, new)
    stored = store.get_messages("conv_c")
    assert [(m.role, m.content) for m in stored] == [("user", "first"), ("assistant", "a"),
                                                     *[(m.role, m.content) for m in new]]
    assert stored[3].tool_calls == [call] and stored[4].tool_call_id == "c1" and stored[4].name == "ship"
    assert [e["seq"] for e in store.get_events("run_c0000002")] == list(range(8))
    assert store.start_run("run_c0000003", "conv_gone", "agent", "scripted", "x", existing=True) is None
    assert store.get_conversation("conv_gone") is None
    assert [r["id"] for r in store.list_runs(conversation_id="conv_gone")] == []


def test_run_statuses_say_how_each_run_of_a_conversation_ended(store, raw_sql) -> None:
    store.start_run("run_ok", "conv_s", "agent", "scripted", "one")
    _finish(store, "run_ok", "conv_s")
    store.start_run("run_stop", "conv_s", "agent", "scripted", "two", existing=True)
    _finish(store, "run_stop", "conv_s", "cancelled")
    store.start_run("run_lost", "conv_s", "agent", "scripted", "three", existing=True)
    assert store.run_statuses("conv_s") == {"run_ok": "ok", "run_stop": "cancelled", "run_lost": "running"}
    raw_sql("UPDATE runs SET lease_expires = 1 WHERE id = 'run_lost'")  # its process died: the lease lapsed
    assert store.run_statuses("conv_s")["run_lost"] == "interrupted"
    assert store.run_statuses("conv_other") == {}


def test_a_nul_in_any_text_is_stored_as_u_fffd_on_both_backends(store: Store) -> None:
    """PostgreSQL text cannot hold U+0000 and stores U+FFFD; SQLite kept it as it was: a title, an operator's
    message, an OpenAI-style request's history or a user's name read back otherwise on each backend (and the
    history reached the model otherwise)."""
    store.create_conversation("conv_nul", "agent", "a\x00b", [Message(role="user", content="hi\x00there")])
    store.append_message("conv_nul", "assistant", "x\x00y", author="user:op")
    store.create_user("usr_nul", "nul@example.com", "Ann\x00Lee", "user")
    assert store.get_conversation("conv_nul")["title"] == "a\ufffdb"
    assert [m.content for m in store.get_messages("conv_nul")] == ["hi\ufffdthere", "x\ufffdy"]
    assert store.get_user("usr_nul")["name"] == "Ann\ufffdLee"
    assert [c["id"] for c in store.search_conversations(text="x\x00y")] == ["conv_nul"]  # as it was sent
