"""Take-over on a channel (the reply job stores the message and runs nothing; the operator's answer goes out
on the channel once; handed back, the agent answers again) and the retention job (only conversations idle
longer than the agent's retention_days go), on both backends through the worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from halguru.agents.loader import load_agent
from halguru.errors import HalguruError
from halguru.jobs import takeover
from halguru.jobs.pipeline import StoreSink
from halguru.jobs.retention import RETENTION, Retention, retention_days
from halguru.store import Store
from tests.jobs.test_worker import RecordingChannel, inbound, make_agent, run_until, worker_for


async def test_a_taken_over_channel_conversation_holds_messages_and_sends_the_operators_answer(
        store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RecordingChannel()
    sink = StoreSink(store)
    worker = worker_for(store, {"echo": agent}, {"echo": {"test": channel}})
    sink.accept(inbound("first", "M1"))
    await run_until(worker, lambda: store.job_stats()["done"] == 1)
    conversation = store.list_jobs(1)[0]["result"]["conversation_id"]
    takeover.take_over(store, conversation, "user:op")
    with pytest.raises(takeover.TakeoverError):
        takeover.take_over(store, conversation, "user:other")
    sink.accept(inbound("is anyone there?", "M2"))
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.job_stats()["done"] == 2)
    assert len(store.list_runs(10, conversation_id=conversation)) == 1  # the agent did not answer
    assert len(channel.sent) == 1  # the answer to "first" only
    sent = takeover.reply(store, conversation, "user:op", "Hello, a person here.")
    assert sent["job_id"] is not None
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.job_stats()["done"] == 3)
    assert channel.sent[-1] == ("+15550001", "Hello, a person here.")
    messages = store.conversation_messages(conversation)
    assert [(m["role"], m["content"], m["author"]) for m in messages[2:]] == [
        ("user", "is anyone there?", None), ("assistant", "Hello, a person here.", "user:op")]
    assert takeover.hand_back(store, conversation) == "user:op"
    sink.accept(inbound("thanks", "M3"))
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.job_stats()["done"] == 4)
    assert len(store.list_runs(10, conversation_id=conversation)) == 2 and "thanks" in channel.sent[-1][1]
    with pytest.raises(takeover.TakeoverError):
        takeover.hand_back(store, conversation)


async def test_the_retention_job_deletes_only_conversations_idle_longer_than_the_agents_days(
        store: Store, tmp_path: Path, raw_sql) -> None:
    keeps = load_agent(make_agent(tmp_path, "keeps"))
    short = load_agent(make_agent(tmp_path, "short", metadata={"retention_days": 7}))
    for cid, agent, age_days in (("conv_old", "short", 8), ("conv_new", "short", 1), ("conv_other", "keeps", 30)):
        store.create_conversation(cid, agent, cid)
        raw_sql("UPDATE conversations SET updated = ? WHERE id = ?", (time.time() - age_days * 86400, cid))
    retention = Retention(store, {"keeps": keeps, "short": short})
    assert retention.tick(time.time()) == 1 and retention.tick(time.time()) == 0  # once an hour
    worker = worker_for(store, {"keeps": keeps, "short": short})
    await run_until(worker, lambda: store.job_stats().get("done", 0) >= 1)
    job = store.list_jobs(5, status="done")[0]
    assert job["kind"] == RETENTION and job["result"] == {"deleted": 1}
    assert store.get_conversation("conv_old") is None
    assert store.get_conversation("conv_new") is not None and store.get_conversation("conv_other") is not None
    entry = store.list_audit(1, action="conversation.retention")[0]
    assert (entry["actor"], entry["target"], entry["details"]["conversations"]) == ("worker", "short", ["conv_old"])


async def test_retention_keeps_a_conversation_waiting_for_an_approval_however_long(
        store: Store, tmp_path: Path, raw_sql) -> None:
    """A run paused for a human's approval, left undecided longer than retention_days (the approver away): the
    retention job deleted its conversation with the pending call, and `runs approve` then said there was no such
    run. It is kept until decided, as `halguru prune` keeps it; once decided and idle again, it goes."""
    from halguru.agents.runtime import collect_result, run
    from halguru.orchestration.approvals import approve

    (tmp_path / "script.yaml").write_text(
        '- tool_calls: [{name: calculator, arguments: {expression: "6*7"}}]\n- "It is 42."\n')
    agent = load_agent(make_agent(tmp_path, "short", model=f"scripted:{tmp_path / 'script.yaml'}",
                                  tools=["calculator"], approvals=["calculator"], metadata={"retention_days": 7}))
    paused = await collect_result(run(agent, "6 times 7?", store=store))
    assert paused.status == "paused"
    store.create_conversation("conv_idle", "short", "idle")
    age = time.time() - 30 * 86400
    for cid in (paused.conversation_id, "conv_idle"):
        raw_sql("UPDATE conversations SET updated = ? WHERE id = ?", (age, cid))
    assert Retention(store, {"short": agent}).tick(time.time()) == 1
    await run_until(worker_for(store, {"short": agent}), lambda: store.job_stats().get("done", 0) >= 1)
    assert store.list_jobs(1)[0]["result"] == {"deleted": 1}  # the idle one only
    assert store.get_conversation("conv_idle") is None and store.get_conversation(paused.conversation_id)
    assert [p["run_id"] for p in store.list_pending()] == [paused.run_id]
    (tmp_path / "script.yaml").write_text('- "It is 42."\n')  # the continuation's model reads it from its top
    done = await asyncio.to_thread(approve, paused.run_id, store=store)
    assert (done.status, done.output) == ("ok", "It is 42.")
    raw_sql("UPDATE conversations SET updated = ? WHERE id = ?", (age, paused.conversation_id))
    assert store.expired_conversations("short", time.time() - 7 * 86400) == [paused.conversation_id]


def test_a_bad_retention_days_is_one_line_naming_the_agent(tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "bad", metadata={"retention_days": "soon"}))
    with pytest.raises(HalguruError, match=r"agent bad: metadata\.retention_days must be a positive number"):
        retention_days(agent)


async def test_an_operators_answer_goes_out_after_older_jobs_were_pruned(store: Store, tmp_path: Path,
                                                                         raw_sql) -> None:
    """`halguru logs prune` keeps a finished channel job as a stub without its payload: an operator's answer in
    a conversation whose last message's job was pruned was a KeyError ('channel'), a 500 on reply (and on
    approving a call an agent made there). The newest message whose job kept its address is answered."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RecordingChannel()
    sink = StoreSink(store)
    for index, text in enumerate(["first", "second"]):
        sink.accept(inbound(text, f"M{index}"))
        await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                        lambda n=index: store.job_stats()["done"] == n + 1)
    conversation = store.list_jobs(1)[0]["result"]["conversation_id"]
    newest = store.list_jobs(1)[0]["id"]
    raw_sql("UPDATE jobs SET finished = finished - 864000 WHERE id = ?", (newest,))  # 10 days ago
    store.prune_runs(time.time() - 86400)
    assert store.get_job(newest)["payload"] == {}  # the stub kept against replays
    takeover.take_over(store, conversation, "user:op")
    sent = takeover.reply(store, conversation, "user:op", "Still with us?")
    assert sent["job_id"] is not None
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(sent["job_id"])["status"] == "done")
    assert channel.sent[-1] == ("+15550001", "Still with us?")
    raw_sql("UPDATE jobs SET finished = finished - 864000")  # every job of it pruned: nowhere to send it
    store.prune_runs(time.time() - 86400)
    assert takeover.reply(store, conversation, "user:op", "Hello?")["job_id"] is None
