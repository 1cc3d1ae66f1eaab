"""Pruning old runs (`halguru logs prune`): runs started before a time go with their events, approvals and
checkpoints; conversations left without a run go too; running runs and newer runs stay. And test runs
(``test`` in their run_started metadata) can be left out of listings. On both backends."""

from __future__ import annotations

import json
import time

from halguru.agents.events import Checkpoint, RunFinished, RunStarted
from halguru.models.base import Message, ToolCallRequest
from halguru.store import Store

TABLES = ("conversations", "messages", "runs", "events", "approvals", "checkpoints")


def _counts(raw_sql) -> dict[str, int]:
    return {t: raw_sql(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def _run(store: Store, run_id: str, conversation: str, *, started: float | None = None,
         finish: bool = True, metadata: dict | None = None, raw_sql=None) -> None:
    store.start_run(run_id, conversation, "agent", "scripted", "hi")
    begun = RunStarted(run_id=run_id, seq=0, agent="agent", model="scripted", input="hi",
                       conversation_id=conversation, metadata=metadata or {})
    store.record_events(run_id, [begun])
    if finish:
        done = RunFinished(run_id=run_id, seq=1, status="ok", output="hello")
        store.finish_run(run_id, conversation, done.model_dump(), [done],
                         [Message(role="user", content="hi"), Message(role="assistant", content="hello")])
    if started is not None:
        raw_sql("UPDATE runs SET started = ? WHERE id = ?", (started, run_id))


def test_prune_deletes_old_runs_with_everything_they_own(store: Store, raw_sql) -> None:
    old = time.time() - 40 * 86400
    _run(store, "run_old1", "conv_old", started=old, raw_sql=raw_sql)  # a conversation with only old runs: goes
    store.start_checkpoint("run_old1", "team", "conv_old", None, None, "hi")
    store.save_checkpoint("run_old1", "step 1", {}, [Checkpoint(run_id="run_old1", seq=2, label="step 1")])
    call = ToolCallRequest(id="c1", name="send", arguments={})
    store.save_pending("run_old1", "conv_old", "agent", None, None, "hi", call.model_dump_json(),
                       json.dumps([]))
    store.decide_approval("run_old1", "rejected", "no")  # decided: nothing waits on it any more
    _run(store, "run_old2", "conv_mixed", started=old, raw_sql=raw_sql)  # its conversation has a newer run: stays
    _run(store, "run_new", "conv_mixed")
    _run(store, "run_live", "conv_live", finish=False, started=old, raw_sql=raw_sql)  # running (a live lease)

    assert store.prune_runs(time.time() - 30 * 86400) == 2

    assert {r["id"] for r in store.list_runs()} == {"run_new", "run_live"}
    assert store.get_conversation("conv_old") is None
    assert store.get_conversation("conv_mixed") is not None
    assert len(store.get_messages("conv_mixed")) == 4  # the conversation's history is kept whole
    assert store.find_approval("run_old1") is None and store.get_checkpoint("run_old1") is None
    assert _counts(raw_sql) == {"conversations": 2, "messages": 4, "runs": 2, "events": 3, "approvals": 0,
                                   "checkpoints": 0}
    assert store.prune_runs(time.time() - 30 * 86400) == 0


def test_prune_keeps_old_runs_waiting_for_approval_or_resumable(store: Store, raw_sql) -> None:
    old = time.time() - 40 * 86400
    call = ToolCallRequest(id="c1", name="send", arguments={}).model_dump_json()
    for run_id in ("run_paused", "run_dead", "run_failed", "run_resumed", "run_plain", "run_decided"):
        _run(store, run_id, f"conv_{run_id}", finish=False, started=old, raw_sql=raw_sql)
    raw_sql("UPDATE runs SET lease_expires = ?", (old,))  # every process died long ago: interrupted
    raw_sql("UPDATE runs SET status = 'paused' WHERE id IN ('run_paused', 'run_decided')")
    raw_sql("UPDATE runs SET status = 'failed' WHERE id IN ('run_failed', 'run_resumed')")
    for run_id in ("run_paused", "run_decided"):
        store.save_pending(run_id, f"conv_{run_id}", "agent", "/agents/a", None, "hi", call, "[]")
    store.decide_approval("run_decided", "approved", None)
    for run_id in ("run_dead", "run_failed", "run_resumed"):
        store.start_checkpoint(run_id, "team", f"conv_{run_id}", "/agents/a", None, "hi")
    store.set_checkpoint_resumed_by("run_resumed", "run_later")

    assert store.prune_runs(time.time() - 30 * 86400) == 4  # an old failed run goes, resumable or not

    assert {r["id"] for r in store.list_runs()} == {"run_paused", "run_dead"}
    assert [a["run_id"] for a in store.list_pending()] == ["run_paused"]
    assert store.get_checkpoint("run_dead") is not None and store.get_checkpoint("run_failed") is None
    assert store.get_conversation("conv_run_paused") is not None
    assert store.get_conversation("conv_run_plain") is None


def test_test_runs_can_be_left_out_of_listings(store: Store) -> None:
    _run(store, "run_a", "conv_a")
    _run(store, "run_t", "conv_t", metadata={"test": True, "test_case": "test_x.yaml::greets"})
    _run(store, "run_b", "conv_b", metadata={"request_id": "r1"})
    assert {r["id"] for r in store.list_runs()} == {"run_a", "run_t", "run_b"}
    assert {r["id"] for r in store.list_runs(test_runs=False)} == {"run_a", "run_b"}
    assert [r["id"] for r in store.list_runs(test_runs=False, limit=1)] == ["run_b"]  # filtered in SQL
    assert store.list_runs(since=time.time() + 60) == []


def test_prune_deletes_jobs_finished_before_and_keeps_the_rest(store: Store, raw_sql) -> None:
    old = time.time() - 40 * 86400
    done, _ = store.enqueue_job("run", "agent", {"input": "a"}, idempotency_key="k-done")
    dead, _ = store.enqueue_job("run", "agent", {"input": "b"})
    recent, _ = store.enqueue_job("run", "agent", {"input": "c"})
    queued, _ = store.enqueue_job("run", "agent", {"input": "d"}, delay=3600)
    for _ in range(3):  # done, dead and recent (the queued one is not due)
        store.claim_job("w", lease=30)
    store.begin_effect(done["id"], "run")
    store.finish_job(done["id"], "w")
    store.fail_job(dead["id"], "w", "boom", None)
    store.finish_job(recent["id"], "w")
    raw_sql("UPDATE jobs SET finished = ? WHERE id IN (?, ?)", (old, done["id"], dead["id"]))
    store.prune_runs(time.time() - 30 * 86400)
    assert {j["id"] for j in store.list_jobs(10)} == {recent["id"], queued["id"]}
    assert raw_sql("SELECT count(*) FROM job_effects")[0][0] == 0


def test_a_nul_in_a_run_leaves_the_listings_working(store: Store) -> None:
    """A tool that read a binary file, or a client that sent U+0000: the event's JSON holds ``\\u0000``
    (PostgreSQL's jsonb refuses it), and an escaped backslash before ``u0000`` must stay what it was."""
    _run(store, "run_n", "conv_n", metadata={"test": True, "note": "a\x00b \\u0000 \\\\u0000"})
    _run(store, "run_m", "conv_m", metadata={"note": "x\x00"})
    assert {r["id"] for r in store.list_runs(test_runs=False)} == {"run_m"}
    assert {r["id"] for r in store.list_runs()} == {"run_n", "run_m"}


def test_a_test_run_whose_start_is_recorded_at_its_finish_is_left_out(store: Store) -> None:
    """A run short enough that its run_started event is stored only with its finish (PostgreSQL finishes a run in
    one statement): it is still marked as a test run."""
    store.start_run("run_q", "conv_q", "agent", "scripted", "hi")
    begun = RunStarted(run_id="run_q", seq=0, agent="agent", model="scripted", input="hi", conversation_id="conv_q",
                       metadata={"test": True})
    done = RunFinished(run_id="run_q", seq=1, status="ok", output="hello")
    store.finish_run("run_q", "conv_q", done.model_dump(), [begun, done],
                     [Message(role="user", content="hi"), Message(role="assistant", content="hello")])
    assert store.list_runs(test_runs=False) == []
    assert [r["id"] for r in store.list_runs()] == ["run_q"]
    assert store.get_events("run_q")[0]["metadata"] == {"test": True}


def test_upgrading_marks_the_test_runs_an_older_halguru_stored(store_factory, raw_sql) -> None:
    """Runs stored before the ``test`` column existed (only their run_started event says so, a NUL in it
    included) are marked as the store is upgraded: `halguru logs` hides them as before."""
    store_factory().close()
    for index in ("runs_listed", "runs_agent"):
        raw_sql(f"DROP INDEX {index}")
    raw_sql("ALTER TABLE runs DROP COLUMN test")
    raw_sql("DELETE FROM migrations WHERE name IN ('m018_test_runs', 'pg011_test_runs')")
    for run_id, metadata in (("run_t", {"test": True, "note": "a\x00b"}), ("run_u", {"request_id": "r1"}),
                             ("run_v", {"test": False})):
        raw_sql("INSERT INTO runs (id, conversation_id, agent, model, input, status, started) "
                "VALUES (?, ?, 'agent', 'scripted', 'hi', 'ok', ?)", (run_id, "conv_" + run_id, time.time()))
        begun = RunStarted(run_id=run_id, seq=0, agent="agent", model="scripted", input="hi",
                           conversation_id="conv_" + run_id, metadata=metadata)
        raw_sql("INSERT INTO events (run_id, seq, type, step, ts, data) VALUES (?, 0, 'run_started', 0, ?, ?)",
                (run_id, begun.ts, begun.model_dump_json()))
    store = store_factory()
    assert {r["id"] for r in store.list_runs(test_runs=False)} == {"run_u", "run_v"}
    assert {r["id"] for r in store.list_runs()} == {"run_t", "run_u", "run_v"}


def test_a_prune_larger_than_a_batch_deletes_every_old_run(store: Store, raw_sql, monkeypatch) -> None:
    """A big prune goes in several transactions (the write lock is let go between them): every old run goes,
    and a conversation whose old runs fall in two batches goes only with its last one."""
    from halguru.store import sql_runs

    monkeypatch.setattr(sql_runs, "PRUNE_BATCH", 2)
    old = time.time() - 40 * 86400
    for i, conversation in enumerate(("conv_a", "conv_a", "conv_b", "conv_c", "conv_c")):
        _run(store, f"run_{i}", conversation, started=old + i, raw_sql=raw_sql)
    _run(store, "run_new", "conv_c")
    assert store.prune_runs(time.time() - 30 * 86400) == 5
    assert [r["id"] for r in store.list_runs()] == ["run_new"]
    assert store.get_conversation("conv_a") is None and store.get_conversation("conv_b") is None
    assert len(store.get_messages("conv_c")) == 6  # its newer run keeps it whole
    assert _counts(raw_sql)["events"] == 2  # run_new's
