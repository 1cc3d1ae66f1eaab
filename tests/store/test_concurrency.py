"""Threads reading and writing through one store at once (what serve mode does under load).

Before the store kept a connection per thread, this failed with ``sqlite3.OperationalError: cannot start
a transaction within a transaction``: one connection was shared by every thread, writers took a lock but
readers did not, so a reader's statement ran inside (and interleaved with) another thread's transaction.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from halguru.agents.events import RunFinished, RunStarted
from halguru.errors import ConversationBusy
from halguru.models.base import Message
from halguru.store import SQLiteStore, Store

THREADS = 8
ROUNDS = 40


def _work(store: Store, worker: int, errors: list[BaseException], start: threading.Barrier) -> None:
    start.wait()
    try:
        for i in range(ROUNDS):
            run_id, conversation = f"run_{worker:02d}{i:04d}", f"conv_{worker}_{i}"
            store.start_run(run_id, conversation, "agent", "scripted", f"hello {i}")
            store.get_run(run_id)
            store.list_runs(limit=5)
            store.list_conversations(limit=5)
            store.record_events(run_id, [RunStarted(run_id=run_id, seq=0, agent="agent", model="scripted",
                                            input="hello", conversation_id=conversation)])
            done = RunFinished(run_id=run_id, seq=1, status="ok", output="hi")
            store.finish_run(run_id, conversation, done.model_dump(), [done],
                             [Message(role="user", content="hello"), Message(role="assistant", content="hi")])
            store.get_messages(conversation)
            store.get_events(run_id)
    except BaseException as exc:  # collected; the test asserts there are none
        errors.append(exc)


def test_threads_reading_and_writing_at_once_never_fail(store: Store) -> None:
    """On both backends."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)
    threads = [threading.Thread(target=_work, args=(store, n, errors, start)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, [repr(e) for e in errors[:5]]
    runs = store.list_runs(limit=THREADS * ROUNDS + 1)
    assert len(runs) == THREADS * ROUNDS and {r["status"] for r in runs} == {"ok"}


def test_runs_finishing_at_once_in_one_conversation_keep_every_message_in_order(store: Store) -> None:
    """Runs of one conversation started at once (two replicas answering one user) go one at a time (a start
    while another run answers is refused: it retries here), and each run's messages, with an operator's
    written meanwhile, land as one block after the others, with no seq taken twice or skipped. On PostgreSQL
    a finish whose snapshot missed another's messages collides on their seq and is run again."""
    store.create_conversation("conv_busy", "agent", "busy")
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    answering: list[str] = []
    counting = threading.Lock()

    def finish(worker: int) -> None:
        start.wait()
        try:
            for i in range(ROUNDS // 4):
                run_id = f"run_b{worker:02d}{i:04d}"
                while True:
                    try:
                        assert store.start_run(run_id, "conv_busy", "agent", "scripted", "q", existing=True) \
                            is not None
                        break
                    except ConversationBusy:
                        time.sleep(0.001)
                with counting:
                    answering.append(run_id)
                    assert len(answering) == 1, answering  # never two runs answering at once
                done = RunFinished(run_id=run_id, seq=0, status="ok", output="a")
                with counting:
                    answering.remove(run_id)
                store.finish_run(run_id, "conv_busy", done.model_dump(), [done],
                                 [Message(role="user", content=f"{run_id} q"),
                                  Message(role="assistant", content=f"{run_id} a")])
                if worker == 0:
                    store.append_message("conv_busy", "assistant", f"operator {i}", author="usr_op")
        except BaseException as exc:  # collected; the test asserts there are none
            errors.append(exc)

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, [repr(e) for e in errors[:5]]
    contents = [m.content for m in store.get_messages("conv_busy")]
    runs = THREADS * (ROUNDS // 4)
    assert len(contents) == 2 * runs + ROUNDS // 4
    questions = [i for i, c in enumerate(contents) if c.endswith(" q")]
    assert len(questions) == runs and all(contents[i + 1] == contents[i][:-1] + "a" for i in questions)
    seqs = [m["seq"] for m in store.conversation_messages("conv_busy")]
    assert seqs == list(range(len(contents)))


def test_a_second_turn_while_one_is_answered_is_refused_until_it_ends_or_its_lease_does(store: Store) -> None:
    store.create_conversation("conv_one", "agent", "one")
    assert store.start_run("run_first", "conv_one", "agent", "scripted", "q", existing=True) == []
    try:
        store.start_run("run_second", "conv_one", "agent", "scripted", "q", existing=True)
        raise AssertionError("a second run started beside the first")
    except ConversationBusy as exc:
        assert exc.run_id == "run_first" and "conversation conv_one is answering another message" in str(exc)
    assert [r["id"] for r in store.list_runs()] == ["run_first"]  # nothing half-recorded
    done = RunFinished(run_id="run_first", seq=0, status="ok", output="a")
    store.finish_run("run_first", "conv_one", done.model_dump(), [done], [])
    assert store.start_run("run_second", "conv_one", "agent", "scripted", "q", existing=True) == []
    assert store.start_run("run_other", "conv_new", "agent", "scripted", "q") == []  # other conversations: free


def test_each_thread_gets_its_own_connection_and_close_closes_them_all(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    seen: list[sqlite3.Connection] = []

    def grab() -> None:
        store.list_runs()
        seen.append(store._conn())  # the store's own test looks inside

    threads = [threading.Thread(target=grab) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    grab()
    assert len({id(c) for c in seen}) == 4
    store.close()
    for conn in seen:
        try:
            conn.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            continue
        raise AssertionError("a connection stayed open after close()")
