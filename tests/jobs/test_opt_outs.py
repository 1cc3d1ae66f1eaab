"""Opt-outs in the worker, on a real store (SQLite and PostgreSQL): a sender who opted out gets nothing more
from the number they wrote to, and the provider's refusal (Twilio's 21610) is remembered as an opt-out."""

from __future__ import annotations

from pathlib import Path

import yaml

from halguru.agents.loader import load_agent
from halguru.channels.base import ChannelError, Inbound, Outbound, SendOnce
from halguru.jobs.pipeline import StoreSink
from halguru.jobs.takeover import send_on_channel
from halguru.store import Store
from tests.jobs.test_worker import RecordingChannel, make_agent, run_until, worker_for

OURS, ANN = "+15550009999", "+15550001"


def inbound(text: str, message_id: str, **extra: str) -> Inbound:
    return Inbound(channel="test", agent="echo", message_id=message_id, sender=ANN, thread=f"{OURS}|{ANN}",
                   text=text, reply={"to": ANN, "from": OURS}, ours=OURS, **extra)


def test_the_store_remembers_an_opt_out_until_they_opt_back_in(store: Store) -> None:
    assert store.get_opt_out("twilio", "echo", OURS, ANN) is None
    assert store.set_opt_out("twilio", "echo", OURS, ANN, "STOP")
    assert not store.set_opt_out("twilio", "echo", OURS, ANN, "QUIT")  # the first reason is kept
    found = store.get_opt_out("twilio", "echo", OURS, ANN)
    assert found is not None and (found["reason"], found["sender"], found["ours"]) == ("STOP", ANN, OURS)
    assert store.get_opt_out("twilio", "echo", "+15550008888", ANN) is None  # per number of ours
    assert store.get_opt_out("twilio", "other", OURS, ANN) is None  # and per agent
    assert store.set_opt_out("twilio", "echo", OURS, ANN, None)
    assert not store.set_opt_out("twilio", "echo", OURS, ANN, None)
    assert store.get_opt_out("twilio", "echo", OURS, ANN) is None


async def test_a_message_queued_before_its_sender_opted_out_is_not_answered(store: Store, tmp_path: Path) -> None:
    """A question, then STOP before the worker got to it: the agent ran and Twilio refused the answer."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RecordingChannel()
    sink = StoreSink(store)
    sink.accept(inbound("what time do you open?", "M1"))
    sink.set_opted_out("test", "echo", OURS, ANN, "STOP")
    sink.ignore(inbound("STOP", "M2"), "opted out")
    job = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(job["id"])["status"] == "done")
    result = store.get_job(job["id"])["result"]
    assert (result["status"], channel.calls) == ("opted_out", 0)
    assert store.list_runs(10, conversation_id=result["conversation_id"]) == []
    assert [(m["body"], m["status"]) for m in store.list_channel_messages(result["conversation_id"])] == [
        ("what time do you open?", "ignored: opted out (STOP)"), ("STOP", "opted out")]


async def test_a_fixed_answer_is_sent_without_running_the_agent(store: Store, tmp_path: Path) -> None:
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = RecordingChannel()
    StoreSink(store).accept(inbound("HELP", "M1", answer="Acme: call +1 555 000 1111"))
    job = store.list_jobs(1)[0]
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(job["id"])["status"] == "done")
    assert channel.sent == [(ANN, "Acme: call +1 555 000 1111")]
    assert store.list_runs(10, conversation_id=store.get_job(job["id"])["result"]["conversation_id"]) == []


class OptedOutChannel(RecordingChannel):
    async def send(self, message: Outbound, once: SendOnce) -> list[str]:
        self.calls += 1
        raise ChannelError("provider: HTTP 400, error 21610: unsubscribed recipient", opted_out="twilio error 21610")


async def test_a_reply_refused_as_opted_out_is_remembered_and_nothing_more_is_sent(store: Store,
                                                                                   tmp_path: Path) -> None:
    """Twilio's 21610 (a STOP that never reached us) killed the job (a dead job for the operator to look into),
    and the next message ran the agent again for another refused answer; an operator's answer to them went the
    same way. Now the message reads unanswered, and the operator's answer fails at once saying why."""
    agent = load_agent(make_agent(tmp_path, "echo"))
    channel = OptedOutChannel()
    sink = StoreSink(store)
    sink.accept(inbound("ping", "M1"))
    job = store.list_jobs(1)[0]
    worker = worker_for(store, {"echo": agent}, {"echo": {"test": channel}})
    await run_until(worker, lambda: store.get_job(job["id"])["status"] == "done")
    assert store.get_job(job["id"])["result"]["status"] == "opted_out"
    assert sink.opted_out("test", "echo", OURS, ANN) == "twilio error 21610"
    assert store.get_channel_message("test", "echo:M1")["status"] == "ignored: opted out (twilio error 21610)"
    conversation_id = store.thread_conversation("test", "echo", f"{OURS}|{ANN}")
    queued = send_on_channel(store, conversation_id, "An operator here.", "human:1")
    assert queued is not None
    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}),
                    lambda: store.get_job(queued)["status"] == "dead")
    assert channel.calls == 1  # the refused reply only
    assert "opted out (twilio error 21610)" in (store.get_job(queued)["last_error"] or "")


async def test_a_stop_while_the_agent_answers_leaves_the_message_unanswered_not_a_dead_job(store: Store,
                                                                                         tmp_path: Path) -> None:
    """STOP came while the agent was answering: the answer was refused (at Twilio: 21610) and the job died."""
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump([{"text": "Let me check that for you.", "token_delay": 0.1}]))
    agent = load_agent(make_agent(tmp_path, "echo", model=f"scripted:{script}"))
    channel = RecordingChannel()
    sink = StoreSink(store)
    sink.accept(inbound("what time do you open?", "M1"))
    job = store.list_jobs(1)[0]

    def stop_while_running() -> bool:
        if store.list_runs(1) and not sink.opted_out("test", "echo", OURS, ANN):
            sink.set_opted_out("test", "echo", OURS, ANN, "STOP")  # the webhook's STOP, mid-answer
        return store.get_job(job["id"])["status"] in ("done", "dead")

    await run_until(worker_for(store, {"echo": agent}, {"echo": {"test": channel}}), stop_while_running)
    assert (store.get_job(job["id"])["status"], store.get_job(job["id"])["result"]["status"]) == ("done", "opted_out")
    assert channel.calls == 0
    assert store.get_channel_message("test", "echo:M1")["status"] == "ignored: opted out (STOP)"


async def test_a_twilio_retry_of_a_message_ignored_as_opted_out_stays_ignored_after_start(
        store: Store, tmp_path: Path, monkeypatch) -> None:
    """STOP, a question (ignored: opted out), START, then Twilio's retry of the question (same MessageSid): the
    retry was queued and answered, a message the sender wrote while opted out. Now a retry is taken as the first
    was: the question stays ignored, and a retried STOP does not opt them out again after their START."""
    from tests.channels.test_twilio import ANN as SENDER
    from tests.channels.test_twilio import OURS as NUMBER
    from tests.channels.test_twilio import TOKEN, channel, form, request

    monkeypatch.setenv("TWILIO_TEST_TOKEN", TOKEN)
    twilio, sink = channel(tmp_path), StoreSink(store)

    async def text(sid: str, body: str) -> None:
        answer = await twilio.webhook(request(form(MessageSid=sid, Body=body)), sink)  # signed as Twilio signs
        assert answer.status == 200, answer.body

    stop, question, start = "SM" + "1" * 32, "SM" + "2" * 32, "SM" + "3" * 32
    await text(stop, "STOP")
    await text(question, "what time do you open?")
    await text(start, "START")
    await text(question, "what time do you open?")  # Twilio's retry, after the START
    await text(stop, "STOP")  # and a late retry of the STOP
    assert store.list_jobs(10) == []  # nothing queued for an answer
    assert store.get_opt_out("twilio", "helper", NUMBER, SENDER) is None
    [conversation] = store.list_conversations()
    assert [(m["body"], m["status"]) for m in store.list_channel_messages(conversation["id"])] == [
        ("STOP", "opted out"), ("what time do you open?", "ignored: opted out (STOP)"), ("START", "opted in")]
