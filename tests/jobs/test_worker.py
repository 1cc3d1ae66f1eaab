"""The in-process worker on a real store (SQLite and PostgreSQL: the ``store`` fixture) with scripted agents:
runs jobs, replies on a channel once even when an attempt dies after sending, answers one thread in order,
retries and dead-letters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from halguru.agents.loader import load_agent
from halguru.agents.runtime import collect_result, run
from halguru.channels.base import ChannelError, Inbound, Outbound, SendOnce
from halguru.jobs.handlers import JobContext
from halguru.jobs.pipeline import StoreSink
from halguru.jobs.worker import Worker, WorkerSettings
from halguru.store import Store
from halguru.store.records import JobRecord


def make_agent(root: Path, name: str, model: str = "scripted", **extra: Any) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": name, "model": model, "instructions": "Echo.",
                                                       **extra}))
    return folder


class RecordingChannel:
    """A channel whose 'provider' is a list; ``fail_after_send`` attempts die right after sending."""

    name: ClassVar[str] = "test"

    def __init__(self, fail_after_send: int = 0, delay: float = 0.0):
        self.sent: list[tuple[str, str]] = []  # (address, text)
        self.fail_after_send = fail_after_send
        self.delay = delay
        self.calls = 0

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        self.calls += 1

        async def deliver() -> dict[str, Any]:
            await asyncio.sleep(self.delay)
            self.sent.append((str(message.reply.get("to")), message.text))
            return {"id": f"msg{len(self.sent)}"}

        value = await once("part:0", deliver)
        if self.fail_after_send > 0:
            self.fail_after_send -= 1
            raise ConnectionError("worker died after the provider accepted the message")
        return [value["id"]]


async def run_until(worker: Worker, done: Callable[[], bool], timeout: float = 20.0) -> None:
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "the worker did not finish in time"
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await task


def worker_for(store: Store, agents: Mapping[str, Any], channels: Mapping[str, Any] | None = None,
               **settings: Any) -> Worker:
    ctx = JobContext(store=store, agents=dict(agents), channels=dict(channels or {}))
    return Worker(ctx, WorkerSettings(**{"poll": 0.05, "backoff": 0.05, "delivery_backoff": 0.05, **settings}))


def inbound(text: str, message_id: str, sender: str = "+15550001") -> Inbound:
    return Inbound(channel="test", agent="echo", message_id=message_id, sender=sender, thread=sender, text=text,
                   reply={"to": sender})


async def test_run_job_runs_the_agent(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    job, _ = store.enqueue_job("run", "echo", {"input": "hello worker"})
    await run_until(worker_for(store, {"echo": agent}), lambda: store.get_job(job["id"])["status"] == "done")
    result = store.get_job(job["id"])["result"]
    assert result["status"] == "ok" and "hello worker" in result["output"]
    run = store.get_run(result["run_id"])
    assert run["status"] == "ok" and run["conversation_id"] == result["conversation_id"]
    assert [m.role for m in store.get_messages(result["conversation_id"])] == ["user", "assistant"]


async def test_reply_is_sent_once_when_an_attempt_dies_after_sending(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RecordingChannel(fail_after_send=2)
    sink = StoreSink(store)
    assert sink.accept(inbound("ping", "M1"))
    assert not sink.accept(inbound("ping", "M1"))  # the provider's retry of the same message
    worker = worker_for(store, {"echo": agent}, {"echo": {"test": channel}})
    job = store.list_jobs(1)[0]
    await run_until(worker, lambda: store.get_job(job["id"])["status"] == "done")
    assert channel.calls == 3  # two attempts died after sending
    assert len(channel.sent) == 1 and channel.sent[0][0] == "+15550001" and "ping" in channel.sent[0][1]
    conversation = store.get_job(job["id"])["result"]["conversation_id"]
    runs = store.list_runs(10, conversation_id=conversation)
    assert len(runs) == 1  # the agent answered once, not once per attempt
    statuses = {(m["direction"], m["status"]) for m in store.list_channel_messages(conversation)}
    assert statuses == {("in", "received"), ("out", "sent")}


class OddChannel(RecordingChannel):
    """A plugin's channel whose send gives something else than the list of the parts' ids."""

    def __init__(self, gives: Any) -> None:
        super().__init__()
        self.gives = gives

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        await super().send(message, once)
        return self.gives  # type: ignore[no-any-return]


@pytest.mark.parametrize(("gives", "kind", "ids"), [("SM123", "a str", ["SM123"]), (None, "None", [None])])
async def test_a_channel_whose_send_gives_no_list_of_ids_is_said_and_its_reply_recorded_once(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, gives: Any, kind: str,
        ids: list[str | None]) -> None:
    """A send giving "SM123" recorded four sent messages, ids "S", "M", "1", "2" (and "3"): the provider's delivery
    reports for SM123 found none; None failed the job with "'NoneType' object is not iterable", naming no plugin,
    though its reply had gone out."""
    import logging

    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = OddChannel(gives)
    assert StoreSink(store).accept(inbound("ping", "M1"))
    job = store.list_jobs(1)[0]
    with caplog.at_level(logging.WARNING, "halguru.worker"):
        await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                        lambda: store.get_job(job["id"])["status"] in ("done", "dead"))
    done = store.get_job(job["id"])
    assert done["status"] == "done" and done["attempts"] == 1 and len(channel.sent) == 1
    out = [m for m in store.list_channel_messages(done["result"]["conversation_id"]) if m["direction"] == "out"]
    assert [m["id"] if ids[0] else None for m in out] == ids and out[0]["status"] == "sent"
    assert [r.getMessage() for r in caplog.records] == [
        f"channel 'test' (plugin '?') of agent echo: its send gave {kind}, not the list of the parts' ids; recorded "
        "as one part"]


def test_an_empty_or_blank_message_reaches_the_agent_as_said_not_as_nothing(store: Store) -> None:
    """An empty SMS ran the agent on nothing (the API refuses a blank message; email already said so)."""
    sink = StoreSink(store)
    for n, text in enumerate(("", "   \n ")):
        assert sink.accept(inbound(text, f"M{n}"))
    assert [j["payload"]["text"] for j in store.list_jobs(2)] == ["(empty message)"] * 2


async def test_a_mail_with_a_huge_message_id_is_answered_and_does_not_hold_the_inbox(store: Store,
                                                                                       tmp_path: Path) -> None:
    """A sender writes its Message-ID and References at any length: one of 6,000 random characters failed at
    every try on PostgreSQL (an index entry is at most ~2,700 bytes), and the mails after it were never read."""
    import secrets

    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RecordingChannel()
    sink = StoreSink(store)
    huge = f"<{secrets.token_urlsafe(4500)}@evil.test>"
    mail = replace(inbound("ping", huge, sender="ann@example.org"), thread=f"ann@example.org|{huge}",
                   reply={"to": "ann@example.org", "message_id": huge})
    assert sink.accept(mail)
    assert not sink.accept(mail)  # fetched again after a restart: still the same message
    assert sink.accept(inbound("next one", "<m2@example.org>", sender="bob@example.org"))
    worker = worker_for(store, {"echo": agent}, {"echo": {"test": channel}})
    await run_until(worker, lambda: store.job_stats()["done"] == 2)
    assert sorted(to for to, _ in channel.sent) == ["ann@example.org", "bob@example.org"]
    job = next(j for j in store.list_jobs(2) if j["payload"]["sender"] == "ann@example.org")
    assert job["payload"]["reply"]["message_id"] == huge  # the reply threads on the id as it came
    inbound_records = [m for m in store.list_channel_messages(job["result"]["conversation_id"])
                       if m["direction"] == "in"]
    assert [m["job_id"] for m in inbound_records] == [job["id"]]


async def test_a_mail_from_a_huge_address_is_answered_recorded_and_counted(store: Store, tmp_path: Path) -> None:
    """A From or Reply-To of 6,000 random characters: its index entry (channel, agent, address, created) is over
    PostgreSQL's ~2,700 bytes, so the mail was queued but never recorded (never counted for
    max_answers_per_hour), and its reply went out but its job failed recording it."""
    import secrets

    huge = f"{secrets.token_urlsafe(4500)}@evil.test"
    sink = StoreSink(store)
    assert sink.accept(replace(inbound("ping", "<m1@evil.test>", sender="eve@evil.test"), correspondent=huge))
    assert sink.accept(inbound("pong", "<m2@evil.test>", sender=huge))
    assert sink.answered("test", "echo", huge, time.time() - 60) == 2
    assert sink.answered("test", "echo", huge[:-1], time.time() - 60) == 0
    channel = RecordingChannel()
    worker = worker_for(store, {"echo": load_agent(make_agent(tmp_path, "echo"))}, {"echo": {"test": channel}})
    await run_until(worker, lambda: store.job_stats()["done"] == 2)
    job = next(j for j in store.list_jobs(2) if j["payload"]["sender"] == huge)
    assert [m["direction"] for m in store.list_channel_messages(job["result"]["conversation_id"])] == ["in", "out"]


async def test_one_message_to_two_agents_is_answered_by_each(store: Store, tmp_path: Path) -> None:
    """One mail to two agents' inboxes (To: help@, Cc: sales@) has one Message-ID: each agent answers it once,
    and each conversation keeps its inbound message (an operator's take-over reply needs it)."""
    agents = {name: load_agent(make_agent(tmp_path, name)) for name in ("echo", "other")}
    channels = {name: RecordingChannel() for name in agents}
    sink = StoreSink(store)
    for first in (True, False):  # then each provider's retry
        accepted = [sink.accept(replace(inbound("ping", "<m1@example.org>"), agent=name)) for name in agents]
        assert accepted == [first, first]
    worker = worker_for(store, agents, {name: {"test": ch} for name, ch in channels.items()})
    await run_until(worker, lambda: store.job_stats()["done"] == 2)
    assert [len(ch.sent) for ch in channels.values()] == [1, 1]
    for job in store.list_jobs(2):
        conversation = job["result"]["conversation_id"]
        inbound_records = [m for m in store.list_channel_messages(conversation) if m["direction"] == "in"]
        assert [(m["agent"], m["job_id"]) for m in inbound_records] == [(job["agent"], job["id"])]


async def test_one_thread_is_answered_in_order(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))  # echoes: each answer names its message
    channel = RecordingChannel(delay=0.3)  # slow sends: a later message would overtake if allowed
    sink = StoreSink(store)
    for i, text in enumerate(["one", "two", "three"]):
        sink.accept(inbound(text, f"M{i}"))
    sink.accept(inbound("elsewhere", "M9", sender="+15550009"))
    worker = worker_for(store, {"echo": agent}, {"echo": {"test": channel}}, concurrency=4)
    await run_until(worker, lambda: store.job_stats()["done"] == 4)
    mine = [text for to, text in channel.sent if to == "+15550001"]
    assert [t.split()[-1] for t in mine] == ["one", "two", "three"]
    # the other sender's answer did not wait for this thread: it went out before the thread's last answer
    # (two 0.3 s sends after the first), an order that holds however slow the machine
    assert [to for to, _ in channel.sent].index("+15550009") < 3
    conversation = store.list_jobs(4)[1]["result"]["conversation_id"]
    users = [m.content for m in store.get_messages(conversation) if m.role == "user"]
    assert users == ["one", "two", "three"]


async def test_failing_job_is_retried_then_dead(store: Store, tmp_path: Path) -> None:
    script = tmp_path / "broken.yaml"
    script.write_text(yaml.safe_dump([{"error": "connection refused"}] * 10))
    agent = load_agent(make_agent(tmp_path, "echo", model=f"scripted:{script}"))
    job, _ = store.enqueue_job("run", "echo", {"input": "x"}, max_attempts=3)
    await run_until(worker_for(store, {"echo": agent}), lambda: store.get_job(job["id"])["status"] == "dead")
    dead = store.get_job(job["id"])
    assert dead["attempts"] == 3 and "connection refused" in dead["last_error"]


async def test_a_job_whose_model_cannot_be_reached_waits_as_an_outage(store: Store, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A model server down (a closed port here; a restarting vLLM or llama-server for a minute or two) made every
    queued job dead within 36 s: 5 tries at the run backoff (2 s doubling), 20 jobs and 100 failed runs. Now a run
    whose model failed waits as a reply its channel could not deliver: ``delivery_backoff`` (30 s) doubling, its
    5 tries spanning about 7 minutes; a tool's failure keeps the short backoff."""
    from tests.llama_server import free_port

    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    agent = load_agent(make_agent(tmp_path, "echo", model="openai:gpt-test"))
    job, _ = store.enqueue_job("run", "echo", {"input": "x"})
    await run_until(worker_for(store, {"echo": agent}, delivery_backoff=60),
                    lambda: store.get_job(job["id"])["attempts"] == 1 and store.get_job(job["id"])["last_error"])
    waiting = store.get_job(job["id"])
    assert waiting["status"] == "queued" and "cannot reach http://127.0.0.1:" in waiting["last_error"]
    assert waiting["run_after"] - time.time() > 40  # 60 s ±20 %, not the run backoff's 0.05


async def test_unknown_agent_is_dead_at_once(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    job, _ = store.enqueue_job("reply", "echo", {"channel": "sms", "text": "x", "thread": "t", "sender": "s",
                                                 "message_id": "m"})
    await run_until(worker_for(store, {"echo": agent}), lambda: store.get_job(job["id"])["status"] == "dead")
    dead = store.get_job(job["id"])
    assert dead["attempts"] == 1 and "no sms channel" in dead["last_error"]


async def test_a_job_whose_conversation_was_deleted_is_dead_at_once(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    store.create_conversation("conv_gone", "echo", "t")
    job, _ = store.enqueue_job("run", "echo", {"input": "x", "conversation_id": "conv_gone"})
    store.delete_conversation("conv_gone")  # after the job was queued (POST /v1/jobs checked it was there)
    await run_until(worker_for(store, {"echo": agent}), lambda: store.get_job(job["id"])["status"] == "dead")
    dead = store.get_job(job["id"])
    assert dead["attempts"] == 1 and dead["last_error"] == ("conversation conv_gone was deleted; the job has "
                                                            "nothing to answer in")


async def cancel_a_running_job(store: Store, tmp_path: Path, lease: float, within: float) -> str:
    """A job whose run streams 10 s, cancelled once its run started; asserts that its worker stopped it within
    ``within`` seconds and let go of it, its run stored cancelled. The job's conversation."""
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(["word"] * 200), "token_delay": 0.05}]))
    agent = load_agent(make_agent(tmp_path, "echo", model=f"scripted:{script}"))
    conversation = store.create_conversation("conv_job", "echo", "t")["id"]
    job, _ = store.enqueue_job("run", "echo", {"input": "x", "conversation_id": conversation})
    worker = worker_for(store, {"echo": agent}, lease=lease)
    task = asyncio.create_task(worker.run())
    # running, with its run started (a claimed job's run row comes a moment after the claim: a slow machine
    # once cancelled in between, and then there was no run to mark)
    while store.get_job(job["id"])["status"] != "running" or not store.list_runs(5):
        await asyncio.sleep(0.02)
    assert store.cancel_job(job["id"])
    started = time.monotonic()
    while worker._running:
        assert time.monotonic() - started < within, "the worker kept running a cancelled job"
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    cancelled = store.get_job(job["id"])
    assert (cancelled["status"], cancelled["lease_expires"]) == ("cancelled", None)  # let go: its thread may go on
    assert [r["status"] for r in store.list_runs(5)] == ["cancelled"]
    return conversation


async def test_cancelling_a_running_job_stops_it(store: Store, tmp_path: Path) -> None:
    # a 1.5 s lease, not 0.6 s, so that a renewal a loaded machine delays by up to a second does not let the lease
    # pass and the job be claimed again
    await cancel_a_running_job(store, tmp_path, lease=1.5, within=5)


async def test_a_cancelled_running_job_stops_at_once_not_at_its_next_renewal(store: Store, tmp_path: Path) -> None:
    """`halguru jobs cancel` of a running job, from any replica: its run stops within the store's look for cancels
    (CANCEL_POLL), as POST /v1/runs/ID/cancel does, stored cancelled; it did not wait for the worker's next lease
    renewal (a third of job_lease, 10 s by default), in which time an answer shorter than that finished "ok" and
    was kept, its job reading cancelled."""
    conversation = await cancel_a_running_job(store, tmp_path, lease=30.0, within=4)  # renewals every 10 s
    assert all(m.content.split().count("word") < 200 for m in store.get_messages(conversation))  # cut short


class CancelledBeforeSending(RecordingChannel):
    """An operator cancels the job between the agent's answer and its sending."""

    def __init__(self, store: Store):
        super().__init__()
        self.store = store

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        assert self.store.cancel_job(message.job_id)
        return await super().send(message, once)


async def test_a_job_cancelled_before_its_reply_sends_nothing(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = CancelledBeforeSending(store)
    StoreSink(store).accept(inbound("ping", "M1"))
    job = store.list_jobs(1)[0]
    worker = worker_for(store, {"echo": agent}, {"echo": {"test": channel}})
    await run_until(worker, lambda: channel.calls == 1 and not worker._running)
    assert channel.sent == []  # the side effect was not started
    cancelled = store.get_job(job["id"])
    assert (cancelled["status"], cancelled["lease_expires"], cancelled["last_error"]) == ("cancelled", None, None)


async def test_stop_releases_running_jobs_for_another_worker(store: Store, tmp_path: Path) -> None:
    """A graceful stop (a deploy, a scale-down) is no failure of the job: released on its last attempt, it is
    queued again, not dead, and its next worker has every attempt left."""
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(["word"] * 200), "token_delay": 0.05}]))
    agent = load_agent(make_agent(tmp_path, "echo", model=f"scripted:{script}"))
    job, _ = store.enqueue_job("run", "echo", {"input": "x"}, max_attempts=1)
    for _ in range(2):  # stopped twice on its only attempt
        worker = worker_for(store, {"echo": agent}, shutdown_timeout=0.2)
        task = asyncio.create_task(worker.run())
        while store.get_job(job["id"])["status"] != "running":
            await asyncio.sleep(0.02)
        worker.stop()
        await task
        again = store.get_job(job["id"])
        assert (again["status"], again["attempts"], again["holder"]) == ("queued", 0, None)
        assert again["last_error"] == "the worker stopped"
    assert [r["status"] for r in store.list_runs(5)] == ["interrupted"] * 2  # not 'cancelled': nobody cancelled it


def test_store_sink_status_never_goes_back(store: Store) -> None:
    from halguru.store.records import ChannelMessageRecord

    sink = StoreSink(store)
    now = time.time()
    store.record_channel_message(ChannelMessageRecord(
        id="SM1", channel="twilio", agent="echo", conversation_id=None, direction="out", address="+1", body="hi",
        status="sent", job_id=None, created=now, updated=now))
    assert sink.update_status("twilio", "SM1", "delivered")
    assert sink.update_status("twilio", "SM1", "sent")  # late report of an earlier state
    assert store.get_channel_message("twilio", "SM1")["status"] == "delivered"
    # a report that beats the worker's own record is kept, and the record fills in the rest
    assert not sink.update_status("twilio", "SM2", "delivered")
    store.record_channel_message(ChannelMessageRecord(
        id="SM2", channel="twilio", agent="echo", conversation_id="conv_1", direction="out", address="+1",
        body="part two", status="sent", job_id="job_1", created=now, updated=now))
    early = store.get_channel_message("twilio", "SM2")
    assert (early["status"], early["body"], early["conversation_id"]) == ("delivered", "part two", "conv_1")



class RefusingChannel(RecordingChannel):
    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        self.calls += 1
        raise ChannelError("provider: HTTP 400, error 21211: invalid 'To' number", permanent=True)


async def test_a_refused_message_is_not_retried(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RefusingChannel()
    StoreSink(store).accept(inbound("ping", "M1"))
    job = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(job["id"])["status"] == "dead")
    assert channel.calls == 1 and "21211" in store.get_job(job["id"])["last_error"]


class DownChannel(RecordingChannel):
    """A channel whose mail server is down for its first ``down`` sends."""

    def __init__(self, down: int):
        super().__init__()
        self.down = down

    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        if self.down > 0:
            self.down -= 1
            raise ChannelError("email channel of echo: SMTP 127.0.0.1:2525: [Errno 111] Connection refused")
        return await super().send(message, once)


async def test_an_undelivered_reply_waits_longer_and_has_more_tries(store: Store, tmp_path: Path) -> None:
    """A mail server down for ~30 s made a reply dead after its 5 tries (2, 4, 8, 16 s apart). A reply that
    could not be delivered now waits ``delivery_backoff`` between its 8 tries; the answer is made only once."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = DownChannel(down=2)
    StoreSink(store).accept(inbound("ping", "M1"))
    job = store.list_jobs(1)[0]
    assert job["max_attempts"] == 8
    worker = worker_for(store, {"echo": agent}, {"echo": {"test": channel}}, delivery_backoff=0.5)
    await run_until(worker, lambda: channel.down == 1 and store.get_job(job["id"])["status"] == "queued")
    waiting = store.get_job(job["id"])
    assert waiting["run_after"] - time.time() > 0.3  # delivery_backoff (0.5 ± 20 %), not backoff (0.05)
    assert "Connection refused" in waiting["last_error"]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}, delivery_backoff=0.05),
                    lambda: store.get_job(job["id"])["status"] == "done")
    assert channel.down == 0 and len(channel.sent) == 1
    assert store.get_job(job["id"])["attempts"] == 3
    assert len(store.list_runs(10, agent="echo")) == 1  # retries send; they do not run the agent again


async def test_a_reply_that_could_not_be_sent_says_so_on_its_conversation(store: Store, tmp_path: Path) -> None:
    """Twilio's API down: the agent's answer was stored in the conversation and the message read 'received', as
    if answered, while the job retried for an hour (and then died) with nothing on the conversation saying that
    its answer never went out. The message being answered now says so, and is clear again once it goes out."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = DownChannel(down=1)
    StoreSink(store).accept(inbound("ping", "M1"))
    job = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}, delivery_backoff=0.5),
                    lambda: channel.down == 0 and store.get_job(job["id"])["status"] == "queued")
    conversation = store.get_channel_message("test", "echo:M1")["conversation_id"]
    [(direction, status, error)] = [(m["direction"], m["status"], m.get("error"))
                                    for m in store.list_channel_messages(conversation)]
    assert (direction, status) == ("in", "answer not sent yet")
    assert error is not None and "Connection refused" in error and "try 1 of 8; retrying" in error
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(job["id"])["status"] == "done")
    assert [(m["direction"], m["status"], m.get("error")) for m in store.list_channel_messages(conversation)] == [
        ("in", "received", None), ("out", "sent", None)]

    refused = RefusingChannel()  # a refusal is final at once
    StoreSink(store).accept(inbound("ping", "M2", sender="+15550002"))
    second = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": refused}}),
                    lambda: store.get_job(second["id"])["status"] == "dead")
    other = store.get_channel_message("test", "echo:M2")["conversation_id"]
    [(direction, status, error)] = [(m["direction"], m["status"], m.get("error"))
                                    for m in store.list_channel_messages(other)]
    assert (direction, status) == ("in", "answer not sent")
    assert error is not None and "21211" in error and "not retried" in error


async def test_a_reply_not_sent_and_then_opted_out_says_only_why_it_is_unanswered(store: Store,
                                                                                  tmp_path: Path) -> None:
    """Its first send failed (the provider down), then the person texted STOP: the message read 'ignored: opted
    out (STOP)' with the earlier try's 'cannot reach ... retrying' still as its why."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = DownChannel(down=1)
    StoreSink(store).accept(replace(inbound("ping", "M1"), ours="+15559990000"))
    job = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}, delivery_backoff=0.5),
                    lambda: channel.down == 0 and store.get_job(job["id"])["status"] == "queued")
    assert store.get_channel_message("test", "echo:M1")["status"] == "answer not sent yet"
    store.set_opt_out("test", "echo", "+15559990000", "+15550001", "STOP")
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(job["id"])["status"] == "done")
    message = store.get_channel_message("test", "echo:M1")
    assert (message["status"], message.get("error")) == ("ignored: opted out (STOP)", None)
    assert channel.sent == []


async def test_an_operators_answer_that_could_not_be_sent_says_so_on_its_conversation(store: Store,
                                                                                        tmp_path: Path) -> None:
    """An operator's answer in a conversation taken over (or a paused run's, once approved) goes out in a
    human_reply job: with the provider down it showed in the conversation as said, and nothing said that the
    person never got it. It is listed as an outgoing message not sent (yet), until it goes out."""
    from halguru.jobs import takeover

    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = DownChannel(down=0)
    StoreSink(store).accept(inbound("ping", "M1"))
    first = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(first["id"])["status"] == "done")
    conversation = store.get_channel_message("test", "echo:M1")["conversation_id"]
    takeover.take_over(store, conversation, "ops@example.com")
    channel.down = 1
    job_id = takeover.reply(store, conversation, "ops@example.com", "A person here: we open at 9.")["job_id"]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}, delivery_backoff=0.5),
                    lambda: channel.down == 0 and store.get_job(job_id)["status"] == "queued")
    [unsent] = [m for m in store.list_channel_messages(conversation)
                if m["direction"] == "out" and m["status"] != "sent"]
    assert (unsent["body"], unsent["status"], unsent["address"]) == (
        "A person here: we open at 9.", "answer not sent yet", "+15550001")
    assert "Connection refused" in (unsent.get("error") or "")
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(job_id)["status"] == "done")
    assert [(m["direction"], m["status"], m.get("error")) for m in store.list_channel_messages(conversation)] == [
        ("in", "received", None), ("out", "sent", None), ("out", "sent", None)]
    assert channel.sent[-1] == ("+15550001", "A person here: we open at 9.")


async def test_a_worker_whose_lease_lapsed_does_not_run_its_own_job_twice(store: Store, tmp_path: Path) -> None:
    """Renewals held up past the lease (a stalled process): the job is claimable again, and this worker, with a
    free slot, claims it. It goes on with the attempt it runs: one run, one result, its slot count right."""
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(["word"] * 80), "token_delay": 0.05}]))  # 4 s
    agent = load_agent(make_agent(tmp_path, "echo", model=f"scripted:{script}"))
    job, _ = store.enqueue_job("run", "echo", {"input": "x"})
    renew = store.renew_job
    stalled = {"until": 0.0}

    def late_renew(job_id: str, holder: str, lease: float) -> bool:
        if time.monotonic() < stalled["until"]:
            return True  # the renewal never reached the store
        return renew(job_id, holder, lease)

    store.renew_job = late_renew  # type: ignore[method-assign]
    worker = worker_for(store, {"echo": agent}, lease=0.6)
    task = asyncio.create_task(worker.run())
    try:
        while store.get_job(job["id"])["status"] != "running":
            await asyncio.sleep(0.02)
        stalled["until"] = time.monotonic() + 1.0  # past the 0.6 s lease: claimable again
        while store.get_job(job["id"])["attempts"] < 2:  # ... and claimed again, by this same worker
            assert store.get_job(job["id"])["status"] == "running", "the job ended before its lease lapsed"
            await asyncio.sleep(0.02)
        assert store.get_job(job["id"])["holder"] == worker.holder and len(worker._running) == 1
        deadline = time.monotonic() + 20
        while store.get_job(job["id"])["status"] != "done":
            assert time.monotonic() < deadline, store.get_job(job["id"])
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await task
    assert len(store.list_runs(10)) == 1  # the agent ran once


async def test_a_job_whose_conversation_is_busy_waits_without_using_its_attempts(store: Store, tmp_path: Path) -> None:
    """A message answered over the API (or a dead worker's run, until its lease ends) holds the conversation:
    the job was failed for it, 5 times in ~30 s, and went dead although nothing was wrong."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    store.create_conversation("conv_busy", "echo", "t")
    store.start_run("run_live", "conv_busy", "echo", "scripted", "first", existing=True)
    job, _ = store.enqueue_job("run", "echo", {"input": "second", "conversation_id": "conv_busy"}, max_attempts=2)
    worker = worker_for(store, {"echo": agent})
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 10
        while "answering another message" not in (store.get_job(job["id"])["last_error"] or ""):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        waiting = store.get_job(job["id"])
        assert waiting["status"] == "queued" and waiting["attempts"] == 0
        store.finish_run("run_live", "conv_busy", {"status": "ok", "output": "", "duration_ms": 0, "steps": 0,
                                                   "prompt_tokens": 0, "completion_tokens": 0}, [], [])
        while store.get_job(job["id"])["status"] != "done":
            assert time.monotonic() < deadline + 10
            await asyncio.sleep(0.05)
    finally:
        worker.stop()
        await task
    assert store.get_job(job["id"])["attempts"] == 1


def billing_flow(root: Path, log: Path) -> Path:
    """A workflow that charges a card (a line in ``log``), then has a slow writer answer (~3 s)."""
    slow = root / "slow.yaml"
    slow.write_text(yaml.safe_dump([{"text": " ".join(["word"] * 60), "token_delay": 0.05}]))
    make_agent(root, "writer", model=f"scripted:{slow}")
    folder = root / "flow"
    folder.mkdir()
    (folder / "tools.py").write_text(
        "from halguru import tool\n\n@tool\ndef charge(amount: int) -> str:\n    \"Charge the card.\"\n"
        f"    with open({str(log)!r}, 'a') as f:\n        f.write(f'{{amount}}\\n')\n"
        "    return f'charged {amount}'\n")
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "flow", "tools": ["charge"], "workflow": {"steps": [
        {"id": "pay", "tool": "charge", "args": {"amount": 5}},
        {"id": "reply", "agent": "../writer", "input": "{{ steps.pay.output }}"}]}}))
    return folder


async def stop_after_charge(store: Store, worker: Worker, log: Path) -> None:
    """Run ``worker`` until its workflow run has charged (checkpointed), then stop it: the run is interrupted."""
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 20
    while not (log.exists() and store.list_runs(1)[0]["checkpoint"] == "step pay ok"):
        assert time.monotonic() < deadline, "the charge step did not finish"
        await asyncio.sleep(0.02)
    worker.stop()
    await task


async def test_a_workflow_job_cut_by_a_stop_resumes_from_its_checkpoint(store: Store, tmp_path: Path) -> None:
    """A workflow job cut after a step with a side effect (a worker stopped, or killed: its run interrupted): the
    next worker started the workflow afresh, so the charge ran again, and the interrupted run stayed resumable
    (`runs resume` would have answered a third time). Its retry now resumes the run from its checkpoint."""
    log = tmp_path / "charges.log"
    agent = load_agent(billing_flow(tmp_path, log))
    job, _ = store.enqueue_job("run", "flow", {"input": "bill me"})
    await stop_after_charge(store, worker_for(store, {"flow": agent}, shutdown_timeout=0.1), log)
    (cut,) = store.list_runs(5)
    assert cut["status"] == "interrupted"
    await run_until(worker_for(store, {"flow": agent}), lambda: store.get_job(job["id"])["status"] == "done")
    assert log.read_text() == "5\n"  # charged once
    result = store.get_job(job["id"])["result"]
    assert result["status"] == "ok" and result["output"].startswith("word")
    assert store.list_runs(5, status="interrupted")[0]["resumed_by"] == result["run_id"]
    messages = store.get_messages(result["conversation_id"])
    assert [(m.role, m.content) for m in messages] == [("user", "bill me"), ("assistant", result["output"])]


class SlowJobListing:
    """The store, but the second read of a job's runs that finds one still running (the retry's look for a turn
    its dead attempt finished, then its look for a cut run) takes ``pause`` seconds after the read: a loaded
    machine (CI saw it on PostgreSQL) between the look for a cut run and the start of a run."""

    def __init__(self, store: Store, pause: float):
        self._store, self._pause, self._seen = store, pause, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def list_runs(self, *args: Any, **kwargs: Any) -> Any:
        runs = self._store.list_runs(*args, **kwargs)
        if kwargs.get("job_id") and any(r["status"] == "running" for r in runs):
            self._seen += 1
            if self._seen == 2:
                time.sleep(self._pause)
        return runs


async def test_a_workflow_job_whose_dead_run_s_lease_ends_as_it_is_retried_charges_once(
        store: Store, tmp_path: Path, raw_sql: Callable[..., Any]) -> None:
    """A worker killed after the charge: its run still read running (its lease not passed) when the retry looked
    for a cut run, and no longer when the retry started its own, so the workflow ran afresh and charged again
    (CI: '5\\n5\\n'). A run of the job still held by a process postpones the retry until it reads cut."""
    log = tmp_path / "charges.log"
    agent = load_agent(billing_flow(tmp_path, log))
    job, _ = store.enqueue_job("run", "flow", {"input": "bill me"})
    await stop_after_charge(store, worker_for(store, {"flow": agent}, shutdown_timeout=0.1), log)
    (cut,) = store.list_runs(5)
    raw_sql("UPDATE runs SET status = 'running', lease_expires = ? WHERE id = ?", (time.time() + 0.3, cut["id"]))
    worker = worker_for(SlowJobListing(store, 0.6), {"flow": agent})  # type: ignore[arg-type]
    await run_until(worker, lambda: store.get_job(job["id"])["status"] in ("done", "dead"))
    assert log.read_text() == "5\n"  # charged once
    result = store.get_job(job["id"])["result"]
    assert store.get_run(cut["id"])["status"] == "interrupted"
    assert store.list_runs(5, status="interrupted")[0]["resumed_by"] == result["run_id"]


async def charge_then_ship(store: Store, tmp_path: Path, first_try: str, **workflow: Any) -> JobRecord:
    """A workflow job that charges 5, then ships (``first_try``: the ship tool's code at its first call only),
    run by a worker until done or dead; the job then. The charges are lines of ``tmp_path/charges.log``."""
    log, marker = tmp_path / "charges.log", tmp_path / "ship.tried"
    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "tools.py").write_text(
        "import time\nfrom pathlib import Path\nfrom halguru import tool\n\n@tool\ndef charge(amount: int) -> str:\n"
        "    \"Charge the card.\"\n"
        f"    with open({str(log)!r}, 'a') as f:\n        f.write(f'{{amount}}\\n')\n"
        "    return f'charged {amount}'\n\n"
        "@tool\ndef ship(order: str) -> str:\n    \"Ship it; the carrier fails at the first try.\"\n"
        f"    marker = Path({str(marker)!r})\n    if not marker.exists():\n        marker.touch()\n"
        f"        {first_try}\n    return f'shipped {{order}}'\n")
    (folder / "agent.yaml").write_text(yaml.safe_dump({"name": "flow", "tools": ["charge", "ship"], "workflow": {
        **workflow, "steps": [{"id": "pay", "tool": "charge", "args": {"amount": 5}},
                              {"id": "send", "tool": "ship", "args": {"order": "A-7"}}]}}))
    job, _ = store.enqueue_job("run", "flow", {"input": "bill and ship"})
    await run_until(worker_for(store, {"flow": load_agent(folder)}),
                    lambda: store.get_job(job["id"])["status"] in ("done", "dead"))
    done = store.get_job(job["id"])
    assert (done["status"], done["attempts"]) == ("done", 2), done["last_error"]
    assert log.read_text() == "5\n"  # charged once
    assert done["result"]["output"] == "shipped A-7"
    return done


async def test_a_workflow_job_whose_step_failed_is_retried_from_its_checkpoint(store: Store, tmp_path: Path) -> None:
    """A failed step fails the job, which is tried again: the retry ran the workflow afresh, charging again."""
    done = await charge_then_ship(store, tmp_path, "raise ConnectionError('carrier down')")
    failed = next(r for r in store.list_runs(5) if r["status"] == "failed")
    assert failed["resumed_by"] == done["result"]["run_id"]


async def test_a_workflow_job_past_its_timeout_is_retried_from_its_checkpoint(store: Store, tmp_path: Path) -> None:
    """A workflow run past its ``timeout`` ends ``limited``, which failed the job; limited runs were not resumable,
    so each retry ran the workflow afresh: the finished charge ran again at every try."""
    done = await charge_then_ship(store, tmp_path, "time.sleep(3)", timeout=1)
    limited = next(r for r in store.list_runs(5) if r["status"] == "limited")
    assert limited["resumed_by"] == done["result"]["run_id"]


async def test_a_job_resumes_its_own_cut_run_not_a_users_cut_run_of_the_same_text(store: Store,
                                                                                  tmp_path: Path) -> None:
    """A job's run cut after its charge, then the user's own same message in the conversation, cut too (Ctrl-C):
    the job's retry took the newest cut run with its text, the user's, and resumed it as its own answer; its own
    run stayed cut, resumable by nobody's intent. Runs record their job: the retry resumes its own."""
    log = tmp_path / "charges.log"
    agent = load_agent(billing_flow(tmp_path, log))
    store.create_conversation("conv_shop", "flow", "shop")
    job, _ = store.enqueue_job("run", "flow", {"input": "bill me", "conversation_id": "conv_shop"})
    await stop_after_charge(store, worker_for(store, {"flow": agent}, shutdown_timeout=0.1), log)
    (own,) = store.list_runs(5)
    async with aclosing(run(agent, "bill me", "conv_shop", store=store)) as events:
        async for event in events:
            if event.type == "checkpoint" and event.label == "step pay ok":
                break  # the user's Ctrl-C after their charge
    users = store.list_runs(1)[0]
    assert users["status"] == "cancelled" and users["kind"] == "workflow"
    await run_until(worker_for(store, {"flow": agent}), lambda: store.get_job(job["id"])["status"] == "done")
    result = store.get_job(job["id"])["result"]
    resumed = {r["id"]: r["resumed_by"] for r in store.list_runs(5)}
    assert resumed[own["id"]] == result["run_id"] and resumed[users["id"]] is None
    assert log.read_text() == "5\n5\n"  # the job's charge and the user's: neither made again
    assert [r["id"] for r in store.list_runs(5, job_id=job["id"])] == [result["run_id"], own["id"]]
    assert store.get_run(users["id"])["job_id"] is None
    assert store.get_run(result["run_id"])["job_id"] == job["id"]  # the continuation is the job's too


async def test_a_retried_job_does_not_take_a_users_same_message_for_its_answer(store: Store, tmp_path: Path) -> None:
    """A job's attempt cut mid-run, then the user sends the same text in the conversation and gets an answer: the
    job's retry took that run, same text and started after its attempt, as the turn it had finished, and ended
    done without ever answering. Now it answers."""
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump([{"text": " ".join(["word"] * 40), "token_delay": 0.05}]))  # 2 s
    agent = load_agent(make_agent(tmp_path, "echo", model=f"scripted:{script}"))
    store.create_conversation("conv_same", "echo", "same")
    job, _ = store.enqueue_job("run", "echo", {"input": "status?", "conversation_id": "conv_same"})
    worker = worker_for(store, {"echo": agent}, shutdown_timeout=0.1)
    task = asyncio.create_task(worker.run())
    deadline = time.monotonic() + 20
    while not any(r["status"] == "running" for r in store.list_runs(5)):
        assert time.monotonic() < deadline, "the job's run did not start"
        await asyncio.sleep(0.02)
    worker.stop()
    await task
    users = await collect_result(run(agent, "status?", "conv_same", store=store))
    assert users.status == "ok"
    await run_until(worker_for(store, {"echo": agent}), lambda: store.get_job(job["id"])["status"] == "done")
    result = store.get_job(job["id"])["result"]
    assert result["run_id"] != users.run_id
    assert sorted(r["status"] for r in store.list_runs(5, conversation_id="conv_same")) == [
        "interrupted", "ok", "ok"]  # the job's cut attempt, the user's answer, the job's answer
    assert store.get_run(result["run_id"])["job_id"] == job["id"]


async def test_a_retried_job_asks_its_question_once(store: Store, tmp_path: Path) -> None:
    """Each try of a job appended its input again: a model down for three tries left the question three times in
    the conversation, and a run cut by a stop left its question and partial answer before the retry's. The retry
    takes back the turn its failed or cut try left at the conversation's end."""
    script = tmp_path / "broken.yaml"
    script.write_text(yaml.safe_dump([{"error": "connection refused"}] * 10))
    broken = load_agent(make_agent(tmp_path, "echo", model=f"scripted:{script}"))
    job, _ = store.enqueue_job("run", "echo", {"input": "asked once"}, max_attempts=3)
    await run_until(worker_for(store, {"echo": broken}), lambda: store.get_job(job["id"])["status"] == "dead")
    conversation = store.list_runs(1, job_id=job["id"])[0]["conversation_id"]
    assert [(m.role, m.content) for m in store.get_messages(conversation)] == [("user", "asked once")]

    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump([{"text": " ".join(["word"] * 40), "token_delay": 0.05}]))
    agent = load_agent(make_agent(tmp_path / "slow", "echo", model=f"scripted:{slow}"))
    fast = load_agent(make_agent(tmp_path / "fast", "echo"))
    conversation = (await collect_result(run(fast, "earlier", store=store))).conversation_id
    job, _ = store.enqueue_job("run", "echo", {"input": "status?", "conversation_id": conversation})
    worker = worker_for(store, {"echo": agent}, shutdown_timeout=0.1)
    task = asyncio.create_task(worker.run())
    while not store.list_runs(1, job_id=job["id"]):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # some of the answer streamed
    worker.stop()
    await task
    await run_until(worker_for(store, {"echo": agent}), lambda: store.get_job(job["id"])["status"] == "done")
    assert [r["status"] for r in store.list_runs(5, job_id=job["id"])] == ["ok", "interrupted"]
    messages = store.get_messages(conversation)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2].content == "status?" and messages[3].content == " ".join(["word"] * 40)


async def test_a_full_conversation_gives_a_texter_a_new_one_and_a_run_job_a_clear_error(store: Store,
                                                                                        tmp_path: Path) -> None:
    """Channel and job conversations grew past ``max_conversation_chars`` (the API's 409 conversation_full held only
    API keys and signed-in users). A texter's thread goes on in a new conversation (the full one stays, listed under
    the channel); a run job queued into a full conversation is dead at once, saying so."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RecordingChannel()
    ctx = JobContext(store=store, agents={"echo": agent}, channels={"echo": {"test": channel}},
                     max_conversation_chars=80)
    worker = Worker(ctx, WorkerSettings(poll=0.05, backoff=0.05, delivery_backoff=0.05))
    sink = StoreSink(store)
    for n, text in enumerate(("first question here", "second question", "third one")):
        assert sink.accept(inbound(text, f"M{n}"))
    await run_until(worker, lambda: len(store.list_jobs(10, status="done")) == 3)
    jobs = sorted(store.list_jobs(10), key=lambda j: j["payload"]["message_id"])
    conversations = [j["result"]["conversation_id"] for j in jobs]
    assert conversations[0] == conversations[1] != conversations[2]  # 2 turns (88 characters) fill the first
    assert [m.content for m in store.get_messages(conversations[2]) if m.role == "user"] == ["third one"]
    assert len(channel.sent) == 3 and "third one" in channel.sent[2][1]  # the texter is answered
    found = {c["id"] for c in store.search_conversations(channel="test")}
    assert set(conversations) <= found  # the full one stays listed under the channel

    job, _ = store.enqueue_job("run", "echo", {"input": "more", "conversation_id": conversations[0]})
    worker = Worker(replace(ctx, channels={}), WorkerSettings(poll=0.05, backoff=0.05))
    await run_until(worker, lambda: store.get_job(job["id"])["status"] == "dead")
    dead = store.get_job(job["id"])
    assert dead["attempts"] == 1 and "conversation_full" in dead["last_error"]
    assert "queue the job without conversation_id" in dead["last_error"]
