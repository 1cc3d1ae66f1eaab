"""Deleting a conversation removes everything in it, whatever runs it holds, and a run still streaming in
it when it is deleted ends without an error and without writing anything back; a rename changes the title
only. On both backends."""

from __future__ import annotations

import json
import threading

from halguru.agents.events import Checkpoint, RunFinished, RunStarted
from halguru.models.base import Message, ToolCallRequest
from halguru.store import Store

TABLES = ("conversations", "messages", "runs", "events", "approvals", "checkpoints")


def _counts(raw_sql) -> dict[str, int]:
    return {t: raw_sql(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def _paused_team_run(store: Store, run_id: str, conversation: str) -> None:
    """A team run with a checkpoint, events, and a pause for approval."""
    store.start_run(run_id, conversation, "team", "scripted", "ship it", owner="key:a")
    store.start_checkpoint(run_id, "team", conversation, "/agents/team", None, "ship it")
    store.save_checkpoint(run_id, "step 1", {"messages": []},
                          [RunStarted(run_id=run_id, seq=0, agent="team", model="scripted", input="ship it",
                                      conversation_id=conversation), Checkpoint(run_id=run_id, seq=1, label="step 1")])
    call = ToolCallRequest(id="c1", name="ship", arguments={"order": "A"})
    store.save_pending(run_id, conversation, "team", "/agents/team", None, "ship it", call.model_dump_json(),
                       json.dumps([Message(role="user", content="ship it").model_dump()]), owner="key:a")
    paused = RunFinished(run_id=run_id, seq=2, status="paused", output="")
    store.finish_run(run_id, conversation, paused.model_dump(), [paused], [])
    store.start_run(run_id + "n", conversation, "team", "scripted", "next")  # a later, finished run
    done = RunFinished(run_id=run_id + "n", seq=0, status="ok", output="done")
    store.finish_run(run_id + "n", conversation, done.model_dump(), [done], [Message(role="user", content="x")])


def test_deleting_a_conversation_with_team_workflow_and_paused_runs(store: Store, raw_sql) -> None:
    _paused_team_run(store, "run_team0001", "conv_1")
    _paused_team_run(store, "run_team0002", "conv_2")  # another conversation: untouched
    store.delete_conversation("conv_1")
    assert store.get_conversation("conv_1") is None
    assert store.find_approval("run_team0001") is None and store.get_checkpoint("run_team0001") is None
    assert [r["id"] for r in store.list_runs()] == ["run_team0002n", "run_team0002"]
    assert _counts(raw_sql) == {"conversations": 1, "messages": 1, "runs": 2, "events": 4, "approvals": 1,
                                   "checkpoints": 1}


def test_a_run_whose_conversation_is_deleted_while_it_streams_records_nothing(store: Store, raw_sql) -> None:
    store.start_run("run_gone0001", "conv_1", "agent", "scripted", "hello")
    store.start_checkpoint("run_gone0001", "workflow", "conv_1", None, None, "hello")
    store.delete_conversation("conv_1")  # the user deletes it mid-run
    started = RunStarted(run_id="run_gone0001", seq=0, agent="agent", model="scripted", input="hello",
                         conversation_id="conv_1")
    store.record_events(started.run_id, [started])
    store.save_checkpoint("run_gone0001", "step 1", {}, [Checkpoint(run_id="run_gone0001", seq=1, label="step 1")])
    store.save_pending("run_gone0001", "conv_1", "agent", None, None, "hello",
                       ToolCallRequest(id="c1", name="t").model_dump_json(), "[]")
    store.start_checkpoint("run_gone0001", "workflow", "conv_1", None, None, "hello")
    done = RunFinished(run_id="run_gone0001", seq=2, status="ok", output="hi")
    store.finish_run("run_gone0001", "conv_1", done.model_dump(), [done],
                     [Message(role="user", content="hello"), Message(role="assistant", content="hi")])
    assert _counts(raw_sql) == dict.fromkeys(TABLES, 0)
    assert not store._held  # type: ignore[attr-defined]  # the store's own test looks inside: its lease is let go


def test_deleting_a_conversation_while_its_run_writes_from_other_threads(store: Store, raw_sql) -> None:
    """On PostgreSQL the writers run at once: the delete and the run's writes must still never meet half-way
    (a foreign key error, or events left behind for a deleted run)."""
    import threading

    store.start_run("run_busy0001", "conv_1", "agent", "scripted", "hello")
    errors: list[BaseException] = []
    started = threading.Event()

    def stream() -> None:
        try:
            for seq in range(300):
                store.record_events("run_busy0001", [Checkpoint(run_id="run_busy0001", seq=seq, label=f"s{seq}")])
                started.set()
            store.save_pending("run_busy0001", "conv_1", "agent", None, None, "hello",
                               ToolCallRequest(id="c1", name="t").model_dump_json(), "[]")
        except BaseException as exc:  # collected; the test asserts there are none
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=stream)
    thread.start()
    started.wait(10)
    store.delete_conversation("conv_1")
    thread.join(60)
    assert not errors, errors
    assert _counts(raw_sql) == dict.fromkeys(TABLES, 0)


def test_a_conversation_deleted_by_several_callers_at_once_is_deleted_once(store_factory) -> None:
    """Four replicas' DELETEs of one conversation: exactly one reports the deletion (the API's 204 and audit
    entry), the others find it gone (404)."""
    from concurrent.futures import ThreadPoolExecutor

    stores = [store_factory() for _ in range(4)]
    for round in range(5):
        conv = f"conv_race{round}"
        stores[0].create_conversation(conv, "agent", "t")
        barrier = threading.Barrier(4)

        def delete(s, conv=conv, barrier=barrier) -> bool:
            barrier.wait()
            return s.delete_conversation(conv)

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(delete, stores))
        assert sorted(results) == [False, False, False, True], results
        assert stores[1].get_conversation(conv) is None


def test_renaming_a_conversation_keeps_its_activity_time_and_everything_in_it(store: Store) -> None:
    store.create_conversation("conv_r", "helper", "first words", [Message(role="user", content="hi")], owner="key:a")
    before = store.get_conversation("conv_r")
    assert store.rename_conversation("conv_r", "Quarterly report")
    after = store.get_conversation("conv_r")
    assert after["title"] == "Quarterly report" and after["updated"] == before["updated"]
    assert [m.content for m in store.get_messages("conv_r")] == ["hi"]
    assert not store.rename_conversation("conv_missing", "x")
