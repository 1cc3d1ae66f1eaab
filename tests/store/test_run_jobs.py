"""Runs record the job that started them (the worker finds a job's earlier runs by it), a continuation carries
its run's job on, and runs stored before the column get it from their run_started metadata. On both backends."""

from __future__ import annotations

import time

from halguru.agents.events import RunFinished, RunStarted
from halguru.models.base import Message
from halguru.store import Store


def _finish(store: Store, run_id: str, conversation: str, status: str = "ok") -> None:
    done = RunFinished(run_id=run_id, seq=1, status=status, output="hello")
    store.finish_run(run_id, conversation, done.model_dump(), [done],
                     [Message(role="user", content="hi"), Message(role="assistant", content="hello")])


def test_a_run_records_its_job_and_its_continuation_carries_it_on(store: Store) -> None:
    store.start_run("run_job1", "conv_a", "agent", "scripted", "hi", job_id="job_1")
    _finish(store, "run_job1", "conv_a", "interrupted")
    store.start_run("run_user", "conv_a", "agent", "scripted", "hi", existing=True)  # the user's, same text
    _finish(store, "run_user", "conv_a", "cancelled")
    store.start_run("run_cont", "conv_a", "agent", "scripted", "hi", existing=True, resumes="run_job1")
    _finish(store, "run_cont", "conv_a")
    store.start_run("run_cont2", "conv_a", "agent", "scripted", "hi", existing=True, resumes="run_user")
    assert {r["id"]: r["job_id"] for r in store.list_runs()} == {
        "run_job1": "job_1", "run_user": None, "run_cont": "job_1", "run_cont2": None}
    assert [r["id"] for r in store.list_runs(job_id="job_1")] == ["run_cont", "run_job1"]
    assert store.list_runs(job_id="job_2") == []
    assert store.get_run("run_cont")["job_id"] == "job_1"


def test_upgrading_sets_the_job_of_runs_an_older_halguru_stored(store_factory, raw_sql) -> None:
    """Runs stored before the column (their job only in their run_started metadata, a NUL in it included) get it
    as the store is upgraded; a team member's or a workflow step's run_started (not the run's first event) does
    not count."""
    store_factory().close()
    raw_sql("DROP INDEX runs_job")
    raw_sql("ALTER TABLE runs DROP COLUMN job_id")
    raw_sql("DELETE FROM migrations WHERE name IN ('m019_run_jobs', 'pg012_run_jobs')")
    for run_id, metadata, seq in (("run_j", {"job_id": "job_7", "note": "a\x00b"}, 0),
                                  ("run_r", {"request_id": "r1"}, 0), ("run_s", {"job_id": "job_8"}, 1)):
        raw_sql("INSERT INTO runs (id, conversation_id, agent, model, input, status, started) "
                "VALUES (?, ?, 'agent', 'scripted', 'hi', 'ok', ?)", (run_id, "conv_" + run_id, time.time()))
        begun = RunStarted(run_id=run_id, seq=seq, agent="agent", model="scripted", input="hi",
                           conversation_id="conv_" + run_id, metadata=metadata)
        raw_sql("INSERT INTO events (run_id, seq, type, step, ts, data) VALUES (?, ?, 'run_started', 0, ?, ?)",
                (run_id, seq, begun.ts, begun.model_dump_json()))
    store = store_factory()
    assert {r["id"]: r["job_id"] for r in store.list_runs()} == {"run_j": "job_7", "run_r": None, "run_s": None}
    assert [r["id"] for r in store.list_runs(job_id="job_7")] == ["run_j"]
