"""The email channel against real peers on loopback: Dovecot for IMAP, aiosmtpd for SMTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from halguru.channels.base import ChannelError, Inbound, Outbound
from halguru.channels.email import EmailChannel
from halguru.channels.imapinbox import Inbox
from tests.channels.mailpeers import (
    PASSWORD,
    SMTP_PASSWORD,
    SMTP_USER,
    USER,
    Dovecot,
    SmtpRecorder,
    dovecot_fixture,
    dovecot_no_idle_fixture,
    dovecot_tls_fixture,
    email_config,
    mail,
    smtp_server_fixture,
    smtp_tls_server_fixture,
)

__all__ = ["dovecot_fixture", "dovecot_no_idle_fixture", "dovecot_tls_fixture", "smtp_server_fixture",
           "smtp_tls_server_fixture"]  # pytest finds them here
KEYWORD = "$HalguruAnswered"


class Sink:
    """What the job pipeline does with an inbound message, reduced to: keep it once per Message-ID."""

    def __init__(self) -> None:
        self.messages: list[Inbound] = []
        self.threads: set[int] = set()  # where it was called: never the event loop's (it writes to the store)
        self.accepted_at: list[float] = []
        self.statuses: list[tuple[str, str, str, str | None]] = []

    def accept(self, message: Inbound) -> bool:
        self.threads.add(threading.get_ident())
        if any(m.message_id == message.message_id for m in self.messages):
            return False
        self.messages.append(message)
        self.accepted_at.append(time.time())
        return True

    def update_status(self, channel: str, message_id: str, status: str, error: str | None = None) -> bool:
        self.statuses.append((channel, message_id, status, error))
        return True

    def answered(self, channel: str, agent: str, correspondent: str, since: float, text: str | None = None) -> int:
        return sum(1 for m, at in zip(self.messages, self.accepted_at, strict=True)
                   if (m.correspondent or m.sender) == correspondent and at > since and text in (None, m.text))

    def reply_of(self, channel: str, agent: str, sent_id: str) -> dict[str, Any] | None:
        return None  # sent nothing


class Once:
    """SendOnce reduced to a dict: an effect whose key is recorded is not performed again."""

    def __init__(self) -> None:
        self.done: dict[str, dict[str, Any]] = {}
        self.calls = 0

    async def __call__(self, key: str, send: Callable[[], Awaitable[dict[str, Any]]],
                       find: Callable[[float], Awaitable[dict[str, Any] | None]] | None = None) -> dict[str, Any]:
        if key not in self.done:
            self.calls += 1
            self.done[key] = await send()
        return self.done[key]


@pytest.fixture(autouse=True)
def imap_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HG_TEST_IMAP", PASSWORD)


def channel(server: Dovecot, smtp_port: int | None = None, **extra: Any) -> EmailChannel:
    return EmailChannel("helper", email_config(server, smtp_port, **extra), Path("."))


async def until(check: Callable[[], bool], seconds: float = 60.0) -> float:
    """Wait for ``check`` (may block: it runs in a thread); the seconds it took. The default bounds a wait for
    progress only (10 s ran out on a loaded CI machine); a test that times what a user notices asserts on the
    seconds returned."""
    start = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not true within {seconds} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def running(ch: EmailChannel, sink: Sink):
    task = asyncio.create_task(ch.source(sink))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def processed(server: Dovecot, count: int, folder: str = "INBOX") -> Callable[[], bool]:
    def check() -> bool:
        flags = server.flags(folder)
        return len(flags) == count and all(KEYWORD in f and "\\Seen" in f for f in flags)

    return check


async def test_mail_is_accepted_once_per_message_and_threads_by_its_root(dovecot: Dovecot) -> None:
    sink = Sink()
    dovecot.append(mail(message_id="<q1@example.org>"))
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 1)
        dovecot.append(mail("Re: Opening hours", "And on Monday?", message_id="<q2@example.org>",
                            headers={"In-Reply-To": "<reply1@example.com>",
                                     "References": "<q1@example.org> <reply1@example.com>"}))
        await until(lambda: len(sink.messages) == 2)
        await until(processed(dovecot, 2))
    first, second = sink.messages
    assert (first.channel, first.agent, first.sender) == ("email", "helper", "ann@example.org")
    assert (first.message_id, first.thread, first.title) == ("<q1@example.org>", "ann@example.org|<q1@example.org>",
                                                             "Opening hours")
    assert first.text == "When are you open on Sunday?"
    assert first.reply == {"to": "ann@example.org", "subject": "Opening hours", "message_id": "<q1@example.org>",
                           "references": []}
    assert (second.message_id, second.thread) == ("<q2@example.org>", first.thread)
    assert second.reply["references"] == ["<q1@example.org>", "<reply1@example.com>"]
    json.dumps(second.reply)  # stored with the job: JSON-safe
    assert sink.threads and threading.get_ident() not in sink.threads  # the store is written off the event loop

    restarted = Sink()  # a new source (a restarted worker) finds nothing left to answer
    dovecot.append(mail("Later", "A new question", message_id="<q3@example.org>"))
    async with running(channel(dovecot), restarted):
        await until(lambda: len(restarted.messages) == 1)
        await until(processed(dovecot, 3))
        await asyncio.sleep(0.5)
    assert [m.message_id for m in restarted.messages] == ["<q3@example.org>"]


class AnsweredSink(Sink):
    """A sink that sent one answer: ``<job1.0@example.com>``, to Ann's mail ``<q1@example.org>``."""

    def reply_of(self, channel: str, agent: str, sent_id: str) -> dict[str, Any] | None:
        if sent_id != "<job1.0@example.com>":
            return None
        return {"to": "ann@example.org", "subject": "Hours", "message_id": "<q1@example.org>", "references": []}


async def test_a_reply_to_our_answer_without_references_joins_its_thread_for_its_correspondent_only(
        dovecot: Dovecot) -> None:
    """A client sending only In-Reply-To made our answer the root of a new thread: a new conversation."""
    answer_only = {"In-Reply-To": "<job1.0@example.com>"}
    dovecot.append(mail("Re: Hours", "And Monday?", message_id="<q2@example.org>", headers=answer_only))
    # someone else who learnt our answer's Message-ID gets a conversation of their own, as with References
    dovecot.append(mail("Re: Hours", "Me too", sender="eve@evil.test", message_id="<e1@evil.test>",
                        headers=answer_only))
    sink = AnsweredSink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 2)
    ann, eve = sink.messages
    assert ann.thread == "ann@example.org|<q1@example.org>"
    assert ann.reply["references"] == ["<q1@example.org>", "<job1.0@example.com>"]  # our answer's References
    assert eve.thread == "eve@evil.test|<job1.0@example.com>"


async def test_mail_not_to_answer_is_marked_processed_without_reaching_the_agent(dovecot: Dovecot) -> None:
    dovecot.append(mail("Out of office", message_id="<ooo@example.org>", headers={"Auto-Submitted": "auto-replied"}))
    dovecot.append(mail("Undelivered", message_id="<dsn@example.org>", sender="MAILER-DAEMON@example.org"))
    dovecot.append(mail("Newsletter", message_id="<news@example.org>", headers={"Precedence": "bulk"}))
    dovecot.append(mail("Re: hi", message_id="<mine@example.com>", sender=f"Bot <{USER}>"))
    dovecot.append(mail("Spam", message_id="<eve@evil.test>", sender="eve@evil.test"))
    dovecot.append(mail("Your order", message_id="<order@example.org>", sender="Shop <no-reply@example.org>"))
    dovecot.append(mail("Real question", message_id="<real@example.org>"))
    sink = Sink()
    async with running(channel(dovecot, allow_from=["@example.org"]), sink):
        await until(processed(dovecot, 7))
    assert [m.message_id for m in sink.messages] == ["<real@example.org>"]


async def test_a_robot_answering_every_reply_gets_at_most_max_answers_per_hour(
        dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    """A responder that answers every mail without saying so (no Auto-Submitted, no Precedence) and our replies
    mailed each other for ever: against a real worker, 31 replies in 30 s, one per round trip, without end."""
    from halguru.channels.base import ANSWER_WINDOW

    for n in range(5):
        dovecot.append(mail("Re: hello", "Thanks, we will get back to you.", sender="Robot <robot@example.net>",
                            message_id=f"<r{n}@example.net>"))
    dovecot.append(mail(message_id="<ann@example.org>"))  # another correspondent is answered as ever
    sink = Sink()
    ch = channel(dovecot, max_answers_per_hour=3)
    async with running(ch, sink):
        await until(processed(dovecot, 6))
        assert sorted(m.message_id for m in sink.messages) == ["<ann@example.org>", "<r0@example.net>",
                                                               "<r1@example.net>", "<r2@example.net>"]
        limited = [r.getMessage() for r in caplog.records if "max_answers_per_hour" in r.getMessage()]
        assert len(limited) == 2 and all(r.count("\n") == 0 for r in limited), limited
        assert "not answering <r3@example.net> from robot@example.net: 3 of their mails" in limited[0]
        # the hour passes (the answers' times moved back: a window shortened to seconds let a loaded machine take
        # longer than it to answer r0-r2, and r3 was answered too)
        sink.accepted_at[:] = [at - ANSWER_WINDOW for at in sink.accepted_at]
        dovecot.append(mail("Re: hello", "Are you there?", sender="robot@example.net", message_id="<r5@example.net>"))
        await until(lambda: len(sink.messages) == 5)


async def test_max_answers_per_hour_holds_across_workers_and_restarts(dovecot: Dovecot, store_factory,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Two workers on one inbox and store, then a restarted one: the limit counts the answers in the store. Each
    worker had counted its own in memory: a second worker answered 3 more of a robot's mails past the limit of
    3, and so did every restart. The correspondent is where answers go (Reply-To), whoever signs From."""
    from halguru.jobs.pipeline import StoreSink

    def robot(n: int) -> EmailMessage:
        return mail("Re: hello", "Thanks!", sender=f"Robot <robot{n}@example.net>", message_id=f"<r{n}@example.net>",
                    headers={"Reply-To": "loop@example.net"})

    def answered() -> list[str]:
        jobs = store_factory().list_jobs(limit=100)
        return sorted(j["payload"]["message_id"] for j in jobs)

    for n in range(3):
        dovecot.append(robot(n))
    first, second = StoreSink(store_factory()), StoreSink(store_factory())  # two worker processes' stores
    async with running(channel(dovecot, max_answers_per_hour=3), first):
        await until(processed(dovecot, 3))
        async with running(channel(dovecot, max_answers_per_hour=3), second):
            for n in range(3, 6):
                dovecot.append(robot(n))
            dovecot.append(mail(message_id="<ann@example.org>"))  # another correspondent is answered as ever
            await until(processed(dovecot, 7))
    assert answered() == ["<ann@example.org>", "<r0@example.net>", "<r1@example.net>", "<r2@example.net>"]
    assert limited(caplog) == {"<r3@example.net>", "<r4@example.net>", "<r5@example.net>"}
    assert "from robot3@example.net: 3 of their mails were answered in the last hour" in caplog.text

    restarted = StoreSink(store_factory())  # a worker started again: the hour is not forgotten
    dovecot.append(robot(6))
    async with running(channel(dovecot, max_answers_per_hour=3), restarted):
        await until(processed(dovecot, 8))
    assert len(answered()) == 4 and "<r6@example.net>" in limited(caplog)


async def test_a_robot_sending_the_same_mail_again_and_again_is_answered_three_times(
        dovecot: Dovecot, store_factory, caplog: pytest.LogCaptureFixture) -> None:
    """A responder that answers each of our replies with the same words and no Auto-Submitted header got 20
    answers an hour (max_answers_per_hour) for ever, 480 paid runs a day; SMS stops such a robot at 3."""
    from halguru.jobs.pipeline import StoreSink

    notice = "Thank you for your message. Our office is closed until January 5."
    for n in range(5):
        dovecot.append(mail("Re: hello", notice, sender="robot@example.net", message_id=f"<same{n}@example.net>"))
    dovecot.append(mail("Re: hello", "Short.", sender="robot@example.net", message_id="<short@example.net>"))
    async with running(channel(dovecot), StoreSink(store_factory())):
        await until(processed(dovecot, 6))
    answered = sorted(j["payload"]["message_id"] for j in store_factory().list_jobs(limit=100))
    assert answered == ["<same0@example.net>", "<same1@example.net>", "<same2@example.net>", "<short@example.net>"]
    assert "not answering <same3@example.net> from robot@example.net: the same mail 3 times" in caplog.text


def limited(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The Message-IDs the limit left unanswered, from its warnings."""
    return {r.getMessage().split()[6] for r in caplog.records if "max_answers_per_hour" in r.getMessage()}


async def test_mail_older_than_max_age_days_is_left_unanswered(dovecot: Dovecot,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """An inbox with years of mail at first start: every old message was queued for an answer (10,000 mails
    90 days old: 10,000 replies, months late)."""
    from datetime import UTC, datetime, timedelta

    caplog.set_level(logging.INFO, logger="halguru.channels.email")
    long_ago = datetime.now(UTC) - timedelta(days=30)
    for n in range(3):
        dovecot.append(mail(f"Old {n}", message_id=f"<old{n}@example.org>"), received=long_ago)
    dovecot.append(mail("Last week", message_id="<recent@example.org>"), received=datetime.now(UTC) - timedelta(days=6))
    dovecot.append(mail("Today", message_id="<new@example.org>"))
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 2)
        await until(lambda: sum(KEYWORD in f for f in dovecot.flags()) == 2)
    assert [m.message_id for m in sink.messages] == ["<recent@example.org>", "<new@example.org>"]
    assert dovecot.flags()[:3] == [set(), set(), set()]  # not read, not marked: as the owner left them
    assert "3 unanswered messages in INBOX arrived before" in caplog.text and "(max_age_days: 7)" in caplog.text

    everything = Sink()  # 0: mail of any age, as before
    async with running(channel(dovecot, max_age_days=0), everything):
        await until(lambda: len(everything.messages) == 3)
    assert sorted(m.message_id for m in everything.messages) == [f"<old{n}@example.org>" for n in range(3)]


async def test_processed_mail_can_be_moved_to_a_folder(dovecot: Dovecot) -> None:
    dovecot.append(mail(message_id="<m1@example.org>"))
    dovecot.append(mail(message_id="<m2@example.org>", headers={"Auto-Submitted": "auto-generated"}))
    sink = Sink()
    async with running(channel(dovecot, processed={"move_to": "Answered"}), sink):
        await until(lambda: len(dovecot.flags("INBOX")) == 0 and len(dovecot.flags("Answered")) == 2)
    assert [m.message_id for m in sink.messages] == ["<m1@example.org>"]
    assert all(KEYWORD in f and "\\Seen" in f for f in dovecot.flags("Answered"))


async def test_html_mail_and_attachments_reach_the_agent_as_text(dovecot: Dovecot, tmp_path: Path) -> None:
    from tests.rag.test_loaders_chunking import write_pdf

    html = mail(message_id="<html@example.org>")
    html.set_content("<html><head><script>steal()</script></head><body><p>My order <b>#42</b> is late.</p>"
                     "<ul><li>Chairs</li><li>Table</li></ul></body></html>", subtype="html")
    with_files = mail("Invoice", "Please check the attached.", message_id="<files@example.org>")
    pdf = write_pdf(tmp_path / "invoice.pdf", ["Invoice 7731", "Total due: 99 EUR"]).read_bytes()
    with_files.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice.pdf")
    with_files.add_attachment("12 chairs, 1 table\n", filename="order.txt")
    dovecot.append(html)
    dovecot.append(with_files)
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 2)
    html_text, files_text = (m.text for m in sink.messages)
    assert "My order #42 is late." in html_text and "- Chairs" in html_text
    assert "<" not in html_text and "steal" not in html_text
    assert files_text.startswith("Please check the attached.")
    assert "[attachment: invoice.pdf]" in files_text and "Total due: 99 EUR" in files_text
    assert "[attachment: order.txt]\n12 chairs, 1 table" in files_text


async def test_a_reply_reaches_the_agent_without_the_history_its_client_copied(dovecot: Dovecot) -> None:
    history = "".join(f"From: Helpdesk <{USER}>\nSent: Monday {i}\nTo: Ann\nSubject: RE: Hours\n\nAnswer {i}.\n\n"
                      for i in range(50))
    outlook = mail("RE: Hours", f"And on Monday?\n\n-----Original Message-----\n{history}",
                   message_id="<o@example.org>")
    gmail = mail("Re: Hours", message_id="<g@example.org>")
    gmail.set_content('<div dir="ltr">And on Tuesday?</div><div class="gmail_quote"><div class="gmail_attr">On Mon, '
                      f'Dec 7, 2026 at 9:00 AM Helpdesk &lt;{USER}&gt; wrote:<br></div><blockquote>We open at 10.'
                      '</blockquote></div>', subtype="html")
    dovecot.append(outlook)
    dovecot.append(gmail)
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 2)
    assert [m.text for m in sink.messages] == ["And on Monday?", "And on Tuesday?"]


async def test_the_text_of_a_mail_too_large_to_fetch_reaches_the_agent(dovecot: Dovecot,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A question sent with a 50 MB attachment reached the agent as 'only its headers arrived': no question."""
    import halguru.channels.imapinbox as imapinbox

    monkeypatch.setattr(imapinbox, "MAX_FETCH_BYTES", 200_000)  # 25 MB, as a test can afford it
    monkeypatch.setattr(imapinbox, "START_BYTES", 16_384)
    big = mail("Contract", "Can you check clause 4 of the attached?", message_id="<big@example.org>")
    big.add_attachment(bytes(range(256)) * 1200, maintype="application", subtype="pdf", filename="contract.pdf")
    dovecot.append(big)
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 1)
        await until(processed(dovecot, 1))
    assert sink.messages[0].text == ("Can you check clause 4 of the attached?\n\n[attachment: contract.pdf, not read: "
                                     "the message was too large]\n\n(The message was too large to read whole: its "
                                     "text arrived, its attachments did not.)")


async def test_idle_picks_up_new_mail_well_before_the_poll_interval(dovecot: Dovecot) -> None:
    sink = Sink()
    async with running(channel(dovecot, poll_interval=60), sink):
        await until(lambda: dovecot.log.exists() and "Login: user=<bot@example.com>" in dovecot.log.read_text())
        await asyncio.sleep(0.5)  # the source has drained the empty inbox and is waiting in IDLE
        dovecot.append(mail(message_id="<idle@example.org>"))
        took = await until(lambda: len(sink.messages) == 1)
    assert took < 5, took


async def test_mail_that_arrives_just_before_a_search_is_answered_at_once(dovecot: Dovecot,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The server answers a SEARCH from the mailbox as the session last saw it and announces newer mail only at
    the command's end, not again in IDLE: such a mail must not wait there for the next one (or the IDLE
    timeout, 5 minutes)."""
    dovecot.append(mail(message_id="<first@example.org>"))
    real, looks = Inbox.unprocessed, 0

    def unprocessed(self: Inbox) -> list[int]:
        nonlocal looks
        looks += 1
        if looks == 2:  # the look after the first mail was marked: the second arrives just before it
            dovecot.append(mail(message_id="<second@example.org>"))
        return real(self)

    monkeypatch.setattr(Inbox, "unprocessed", unprocessed)
    sink = Sink()
    async with running(channel(dovecot, poll_interval=60), sink):
        took = await until(lambda: len(sink.messages) == 2, seconds=15)
    assert [m.message_id for m in sink.messages] == ["<first@example.org>", "<second@example.org>"]
    assert took < 5, took


async def test_without_idle_the_inbox_is_polled_and_without_move_mail_is_copied(dovecot_no_idle: Dovecot) -> None:
    sink = Sink()
    ch = channel(dovecot_no_idle, poll_interval=0.3, processed={"move_to": "Answered"})
    async with running(ch, sink):
        await until(lambda: "Login: user=" in dovecot_no_idle.log.read_text())
        await asyncio.sleep(0.5)
        dovecot_no_idle.append(mail(message_id="<poll@example.org>"))
        await until(lambda: len(sink.messages) == 1, seconds=5)
        await until(lambda: dovecot_no_idle.flags("INBOX") == [] and len(dovecot_no_idle.flags("Answered")) == 1)
    assert "IDLE" not in dovecot_no_idle.log.read_text()  # it never tried: the server did not offer it
    (moved,) = dovecot_no_idle.flags("Answered")
    assert KEYWORD in moved and "\\Deleted" not in moved  # the copy is clean; the original was expunged


async def test_a_lost_connection_is_reopened_with_one_log_line_per_failure(
        dovecot: Dovecot, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import halguru.channels.email as email_module

    monkeypatch.setattr(email_module, "BACKOFF_START", 0.2)  # keep the test short; the schedule still doubles
    sink = Sink()
    caplog.set_level(logging.INFO, logger="halguru.channels.email")
    async with running(channel(dovecot), sink):
        await until(lambda: "connected to" in caplog.text)
        await asyncio.to_thread(dovecot.stop)
        await until(lambda: "retrying in" in caplog.text)
        await asyncio.sleep(0.5)  # a failed reconnect or two while the server is down
        await asyncio.to_thread(dovecot.start)
        dovecot.append(mail(message_id="<after@example.org>"))
        await until(lambda: len(sink.messages) == 1, seconds=15)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems and all(r.exc_info is None and "\n" not in r.getMessage() for r in problems)
    assert all("email channel of helper (IMAP 127.0.0.1:" in r.getMessage() for r in problems)
    assert caplog.text.count("connected to") >= 2


class DownSink(Sink):
    """A store that is down for the first ``failures`` messages handed to it."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def accept(self, message: Inbound) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise OSError("database is locked")
        return super().accept(message)


async def test_mail_is_marked_only_after_the_sink_took_it(dovecot: Dovecot, caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import halguru.channels.email as email_module

    # the unmarked mail is checked after the first failure, before the fourth drain takes it: 0.5 + 1 + 2 s
    # of backoff leave a slow machine time for that check's own IMAP login
    monkeypatch.setattr(email_module, "BACKOFF_START", 0.5)
    caplog.set_level(logging.WARNING, logger="halguru.channels.email")
    dovecot.append(mail(message_id="<kept@example.org>"))
    sink = DownSink(failures=3)
    async with running(channel(dovecot), sink):
        await until(lambda: "retrying in" in caplog.text)
        assert dovecot.flags() == [set()]  # not accepted, so not marked: the next attempt fetches it again
        await until(lambda: len(sink.messages) == 1)
        await until(processed(dovecot, 1))
    delays = [r.getMessage().rsplit("retrying in ", 1)[1] for r in caplog.records]
    assert delays == ["0.5 s", "1 s", "2 s"]  # backing off: the store fails at every first drain
    assert all("OSError: database is locked" in r.getMessage() for r in caplog.records)


async def test_a_wrong_password_is_one_line_and_retried(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HG_TEST_IMAP", "wrong")
    caplog.set_level(logging.WARNING, logger="halguru.channels.email")
    ch = channel(dovecot)
    assert ch.status is None  # not tried yet
    async with running(ch, Sink()):
        await until(lambda: "retrying in" in caplog.text)
    line = caplog.records[0].getMessage()
    assert "LoginError" in line and "uthentication failed" in line and "\n" not in line, line
    # /status and halguru_channel_up read this (the log alone said so before)
    assert ch.status is not None and not ch.status.ok and "LoginError" in ch.status.detail
    monkeypatch.setenv("HG_TEST_IMAP", PASSWORD)
    good = channel(dovecot)
    async with running(good, Sink()):
        await until(lambda: good.status is not None)
    assert good.status is not None and good.status.ok and good.status.detail.endswith(": connected")


async def test_send_replies_in_the_thread_once(dovecot: Dovecot, smtp_server: SmtpRecorder) -> None:
    ch = channel(dovecot, smtp_server.port)
    reply = {"to": "desk@example.org", "subject": "Opening hours", "message_id": "<q2@example.org>",
             "references": ["<q1@example.org>", "<r1@example.com>"]}
    once = Once()
    out = Outbound(channel="email", agent="helper", conversation_id="c1", job_id="job-7", text="We open at 10.",
                   reply=reply)
    assert await ch.send(out, once) == ["<job-7.0@example.com>"]
    (received,) = smtp_server.wait_for(1)
    assert smtp_server.envelopes == [(USER, ["desk@example.org"])]
    assert received["From"] == USER and received["To"] == "desk@example.org"
    assert received["Subject"] == "Re: Opening hours"
    assert received["In-Reply-To"] == "<q2@example.org>"
    assert str(received["References"]).split() == ["<q1@example.org>", "<r1@example.com>", "<q2@example.org>"]
    assert received["Auto-Submitted"] == "auto-replied"
    assert received["Message-ID"] == "<job-7.0@example.com>"
    assert received.get_content().strip() == "We open at 10."

    assert await ch.send(out, once) == ["<job-7.0@example.com>"]  # a retried job: nothing sent again
    await asyncio.sleep(0.3)
    assert len(smtp_server.received) == 1 and once.calls == 1

    again = Outbound(**{**out.__dict__, "job_id": "job-8", "reply": {**reply, "subject": "RE: Opening hours"}})
    await ch.send(again, Once())
    assert smtp_server.wait_for(2)[1]["Subject"] == "RE: Opening hours"  # never 'Re: RE: ...'


class StartedOnce(Once):
    """SendOnce after an attempt that started the effect and died: the outcome is unknown, so ``find`` is asked
    first (as the job pipeline does) and its answer, when there is one, stands for sending."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, Any] | None] = []

    async def __call__(self, key: str, send: Callable[[], Awaitable[dict[str, Any]]],
                       find: Callable[[float], Awaitable[dict[str, Any] | None]] | None = None) -> dict[str, Any]:
        assert find is not None, "with sent_folder the channel can tell whether a reply went out"
        self.found.append(await find(time.time() - 60))
        if self.found[-1] is not None:
            return self.found[-1]
        return await super().__call__(key, send, find)


async def test_a_reply_filed_in_the_sent_folder_is_not_sent_again(dovecot: Dovecot,
                                                                  smtp_server: SmtpRecorder) -> None:
    ch = channel(dovecot, smtp_server.port, sent_folder="Sent")
    reply = {"to": "ann@example.org", "subject": "Hours", "message_id": "<q@example.org>", "references": []}
    out = Outbound(channel="email", agent="helper", conversation_id="c", job_id="job-9", text="Ten.", reply=reply)
    # the first attempt died after the SMTP server took the reply and filed it (as Gmail does)
    dovecot.append(ch.reply_mail(out), folder="Sent")
    once = StartedOnce()
    assert await ch.send(out, once) == ["<job-9.0@example.com>"]
    assert once.found == [{"message_id": "<job-9.0@example.com>"}] and once.calls == 0
    await asyncio.sleep(0.3)
    assert smtp_server.received == []
    # another job's reply is not in Sent: the retry sends it
    other = Outbound(**{**out.__dict__, "job_id": "job-10"})
    retry = StartedOnce()
    assert await ch.send(other, retry) == ["<job-10.0@example.com>"]
    assert retry.found == [None] and retry.calls == 1
    assert smtp_server.wait_for(1)[0]["Message-ID"] == "<job-10.0@example.com>"


async def test_an_smtp_failure_is_one_line_and_leaves_the_effect_undone(dovecot: Dovecot) -> None:
    once = Once()
    out = Outbound(channel="email", agent="helper", conversation_id="c1", job_id="j", text="hi",
                   reply={"to": "ann@example.org", "subject": "s", "message_id": "<m@x>", "references": []})
    refused = r"^email channel of helper: SMTP 127\.0\.0\.1:\d+: ConnectionRefused"
    with pytest.raises(ChannelError, match=refused) as err:
        await channel(dovecot).send(out, once)  # nobody listens on the SMTP port
    assert not err.value.permanent  # the job's retry will send it
    assert once.done == {}


async def test_a_recipient_the_server_refuses_is_a_permanent_failure(dovecot: Dovecot,
                                                                    smtp_server: SmtpRecorder) -> None:
    smtp_server.refuse.add("gone@example.org")
    out = Outbound(channel="email", agent="helper", conversation_id="c1", job_id="j", text="hi",
                   reply={"to": "gone@example.org", "subject": "s", "message_id": "<m@x>", "references": []})
    with pytest.raises(ChannelError) as err:
        await channel(dovecot, smtp_server.port).send(out, Once())
    assert err.value.permanent  # retrying cannot help: the job is dead at once
    assert smtp_server.received == []
    # the server's words, as `halguru jobs list` and `show` print them (was smtplib's repr: a dict of bytes)
    assert str(err.value) == (f"email channel of helper: SMTP 127.0.0.1:{smtp_server.port}: "
                              "gone@example.org refused: 550 5.1.1 No such user here")


def test_smtp_refusals_are_the_servers_words_in_one_line() -> None:
    import smtplib

    from halguru.channels.email import smtp_problem

    assert smtp_problem(smtplib.SMTPSenderRefused(553, b"5.7.1 Sender\r\nnot allowed", "bot@example.com")) == (
        "sender bot@example.com refused: 553 5.7.1 Sender not allowed")
    assert smtp_problem(smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam")) == (
        "SMTPDataError: 554 5.7.1 Message rejected as spam")
    assert smtp_problem(smtplib.SMTPAuthenticationError(535, b"5.7.8 Bad credentials")) == (
        "SMTPAuthenticationError: 535 5.7.8 Bad credentials")
    assert smtp_problem(ConnectionRefusedError(111, "Connection refused")) == (
        "ConnectionRefusedError: [Errno 111] Connection refused")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
async def test_tls_to_both_servers_with_a_login_for_smtp(security: str, dovecot_tls: Dovecot,
                                                         smtp_tls_server: SmtpRecorder,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # trust the servers' self-signed certificate the way an operator trusts a private CA (OpenSSL's variable)
    assert smtp_tls_server.cert is not None
    bundle = dovecot_tls.root / "trusted.pem"
    bundle.write_bytes((dovecot_tls.root / "cert.pem").read_bytes() + smtp_tls_server.cert.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setenv("HG_TEST_SMTP", SMTP_PASSWORD.decode())
    port = dovecot_tls.tls_port if security == "ssl" else dovecot_tls.port
    ch = EmailChannel("helper", {
        "address": USER,
        "imap": {"host": "127.0.0.1", "port": port, "security": security, "password": "HG_TEST_IMAP"},
        "smtp": {"host": "127.0.0.1", "port": smtp_tls_server.port, "security": "starttls",
                 "username": SMTP_USER.decode(), "password": "HG_TEST_SMTP"},
    }, Path("."))
    dovecot_tls.append(mail(message_id="<tls@example.org>"))
    sink = Sink()
    async with running(ch, sink):
        await until(lambda: len(sink.messages) == 1)
    assert ", TLS," in dovecot_tls.log.read_text()  # Dovecot's login line: the session was encrypted
    out = Outbound(channel="email", agent="helper", conversation_id="c", job_id="tls-1", text="Encrypted hello.",
                   reply=sink.messages[0].reply)
    await ch.send(out, Once())
    (received,) = smtp_tls_server.wait_for(1)
    assert smtp_tls_server.logins == [SMTP_USER.decode()] and received["In-Reply-To"] == "<tls@example.org>"


async def test_a_certificate_nobody_vouches_for_is_refused(dovecot_tls: Dovecot,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="halguru.channels.email")
    ch = EmailChannel("helper", {
        "address": USER, "smtp": {"host": "127.0.0.1"},
        "imap": {"host": "127.0.0.1", "port": dovecot_tls.tls_port, "password": "HG_TEST_IMAP"},
    }, Path("."))
    async with running(ch, Sink()):
        await until(lambda: "retrying in" in caplog.text)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.records[0].getMessage()


def dsn(original_id: str, action: str = "failed") -> bytes:
    """A bounce as Postfix writes one (RFC 3464): the failure, then the headers of the mail that failed."""
    return f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {USER}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
Message-ID: <dsn-{action}-{original_id.strip("<>")}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; ann@nowhere.example
Action: {action}
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <ann@nowhere.example>: Recipient address
    rejected: User unknown

--B1
Content-Type: text/rfc822-headers

From: {USER}
To: ann@nowhere.example
Subject: Re: my order
Message-ID: {original_id}

--B1--
""".replace("\n", "\r\n").encode()


async def test_a_bounce_of_our_answer_marks_it_failed_with_why(dovecot: Dovecot) -> None:
    """A bounce was skipped as mail not to answer (right), and the answer it reported read 'sent' for ever: the
    console never said that ann@nowhere.example does not exist. Only our own answers' ids are taken (a forged
    bounce of another domain's mail changes nothing), and a delay is not a failure."""
    sink = Sink()
    ours = f"<job_abc.0@{USER.rpartition('@')[2]}>"
    for raw in (dsn(ours), dsn("<x@elsewhere.example>"), dsn(f"<job_def.0@{USER.rpartition('@')[2]}>", "delayed")):
        dovecot.append(raw)
    async with running(channel(dovecot), sink):
        await until(processed(dovecot, 3))
    assert sink.messages == []
    why = "ann@nowhere.example: 5.1.1 smtp; 550 5.1.1 <ann@nowhere.example>: Recipient address rejected: User unknown"
    assert sink.statuses == [("email", ours, "failed", why)]


def raw_mail(message_id: str, headers: str, body: bytes) -> bytes:
    """A mail as some sender's software writes it, bytes and all (EmailMessage would tidy it up)."""
    return (f"From: Ann <ann@example.org>\r\nTo: {USER}\r\nSubject: Hours\r\nMessage-ID: {message_id}\r\n"
            f"MIME-Version: 1.0\r\n{headers}\r\n\r\n").encode() + body


async def test_mail_that_names_no_charset_reaches_the_agent_in_the_charset_it_was_written_in(
        dovecot: Dovecot) -> None:
    """8-bit text with no charset (or 'us-ascii') reached the agent as ASCII: 'Caf\ufffd\ufffd', each letter lost."""
    dovecot.append(raw_mail("<utf8@example.org>", "Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit",
                            "Le café ouvre-t-il à 9 h ?\r\n".encode()))
    dovecot.append(raw_mail("<latin@example.org>", "Content-Type: text/plain; charset=us-ascii\r\n"
                            "Content-Transfer-Encoding: 8bit", "Le café ouvre-t-il à 9 h ?\r\n".encode("cp1252")))
    dovecot.append(raw_mail("<meta@example.org>", "Content-Type: text/html\r\nContent-Transfer-Encoding: 8bit",
                            b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251">'
                            b"</head><body><p>" + "Когда вы открыты?".encode("cp1251") + b"</p></body></html>"))
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 3)
    assert [m.text for m in sink.messages] == ["Le café ouvre-t-il à 9 h ?", "Le café ouvre-t-il à 9 h ?",
                                               "Когда вы открыты?"]


async def test_the_html_of_an_alternative_whose_plain_part_is_empty_reaches_the_agent(dovecot: Dovecot) -> None:
    """A mailing tool's empty text/plain beside the HTML that holds the words: the agent got '(empty message)'."""
    dovecot.append(raw_mail("<alt@example.org>", 'Content-Type: multipart/alternative; boundary="b"',
                            b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n\r\n"
                            b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
                            b"<p>Is the <b>blue</b> chair in stock?</p>\r\n--b--\r\n"))
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 1)
    assert sink.messages[0].text == "Is the blue chair in stock?"


async def test_a_mail_that_is_only_an_attachment_reaches_the_agent_as_its_text(dovecot: Dovecot,
                                                                                tmp_path: Path) -> None:
    """A scanner's mail is its PDF and nothing else (no multipart, no body): the agent got '(empty message)'."""
    import base64

    from tests.rag.test_loaders_chunking import write_pdf

    pdf = write_pdf(tmp_path / "scan.pdf", ["Delivery note 5521", "3 chairs received"]).read_bytes()
    dovecot.append(raw_mail("<scan@example.org>", 'Content-Type: application/pdf; name="scan.pdf"\r\n'
                            'Content-Disposition: attachment; filename="scan.pdf"\r\n'
                            "Content-Transfer-Encoding: base64", base64.encodebytes(pdf)))
    dovecot.append(raw_mail("<notes@example.org>", 'Content-Type: text/plain; charset=utf-8; name="notes.txt"\r\n'
                            'Content-Disposition: attachment; filename="notes.txt"', b"Order 12 more chairs.\r\n"))
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 2)
    scan, notes = (m.text for m in sink.messages)
    assert scan.startswith("[attachment: scan.pdf]") and "3 chairs received" in scan
    assert notes == "[attachment: notes.txt]\nOrder 12 more chairs."


async def test_a_reply_the_server_took_is_sent_even_if_it_answers_quit_with_an_error(
        dovecot: Dovecot, smtp_server: SmtpRecorder) -> None:
    """smtplib raised on a QUIT answered other than 221, after the server had taken the mail: the job failed,
    and its retry mailed the same reply again."""
    smtp_server.quit_reply = "421 4.4.2 closing the connection"
    once = Once()
    out = Outbound(channel="email", agent="helper", conversation_id="c1", job_id="job-q", text="We open at 10.",
                   reply={"to": "ann@example.org", "subject": "Hours", "message_id": "<m@x>", "references": []})
    assert await channel(dovecot, smtp_server.port).send(out, once) == ["<job-q.0@example.com>"]
    assert once.done == {"mail": {"message_id": "<job-q.0@example.com>"}}  # recorded: a retry sends nothing
    assert len(smtp_server.wait_for(1)) == 1


async def test_a_subject_written_in_8_bit_latin_1_is_answered_under_its_own_words(dovecot: Dovecot,
                                                                                  smtp_server: SmtpRecorder) -> None:
    """A raw Latin-1 Subject (no encoded words) read as 'R\ufffdservation': the conversation's title and the reply's
    'Re:' subject carried the replacement character to the person."""
    dovecot.append(f"From: Ren\xe9 <rene@example.fr>\r\nTo: {USER}\r\nSubject: R\xe9servation \xe0 d\xeener\r\n"
                   "Message-ID: <latin1@example.fr>\r\n\r\nUne table pour deux ?\r\n".encode("latin-1"))
    dovecot.append(f"From: rene@example.fr\r\nTo: {USER}\r\nSubject: =?iso-8859-1?q?R=E9servation?= \xe0 8 h\r\n"
                   "Message-ID: <mixed@example.fr>\r\n\r\nEt le matin ?\r\n".encode("latin-1"))
    ch, sink = channel(dovecot, smtp_server.port), Sink()
    async with running(ch, sink):
        await until(lambda: len(sink.messages) == 2)
    assert [m.title for m in sink.messages] == ["Réservation à dîner", "Réservation à 8 h"]
    first = sink.messages[0]
    out = Outbound(channel="email", agent="helper", conversation_id="c", job_id="job-l", text="Oui.",
                   reply=first.reply)
    await ch.send(out, Once())
    assert smtp_server.wait_for(1)[0]["Subject"] == "Re: Réservation à dîner"


async def test_a_mail_forwarded_as_an_attachment_reaches_the_agent(dovecot: Dovecot) -> None:
    """'Is this genuine?' with the suspect mail attached (Outlook's Forward as Attachment): the attached mail was
    neither read nor named, so the agent saw a question about nothing."""
    suspect = mail("Verify your account", "Click https://bank.example.net/login within 24 hours.",
                   sender="Bank <security@bank.example.net>", message_id="<phish@bank.example.net>")
    question = mail("Is this genuine?", "I got the attached mail. Is it really from you?",
                    message_id="<fwd@example.org>")
    question.add_attachment(suspect, filename="Verify your account.eml")
    dovecot.append(question)
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 1)
    assert sink.messages[0].text == (
        "I got the attached mail. Is it really from you?\n\n"
        "[attachment: Verify your account.eml (a mail)]\n"
        "From: Bank <security@bank.example.net>\nSubject: Verify your account\n\n"
        "Click https://bank.example.net/login within 24 hours.")


async def test_answered_mail_a_cut_attempt_left_in_the_inbox_is_moved_on(dovecot: Dovecot) -> None:
    """Marking flags a mail, then moves it: a worker killed or a connection lost between the two left the mail in
    the inbox for good (flagged, so never looked at again), though move_to keeps the inbox to mail still to answer."""
    dovecot.append(mail(message_id="<cut@example.org>"))
    with dovecot.client() as client:  # what the cut attempt did: the flags, not the move
        client.select_folder("INBOX")
        client.add_flags(client.search(["ALL"]), [b"\\Seen", KEYWORD])
    dovecot.append(mail(message_id="<new@example.org>", sender="bob@example.org"))
    sink = Sink()
    async with running(channel(dovecot, processed={"move_to": "Answered"}), sink):
        await until(lambda: len(dovecot.flags("INBOX")) == 0 and len(dovecot.flags("Answered")) == 2)
    assert [m.message_id for m in sink.messages] == ["<new@example.org>"]  # the answered one is not answered again


async def test_a_long_pdf_attachment_is_read_only_as_far_as_the_agent_gets_it(dovecot: Dovecot,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent gets an attachment's first 20,000 characters, yet every page of a PDF was extracted first: a 2 MB
    PDF of 3,000 pages held the inbox 19 s (a 5 MB one about a minute) before the next mail was looked at."""
    from fpdf import FPDF
    from pypdf import PageObject

    pdf = FPDF()
    pdf.set_font("Helvetica", size=6)
    for page in range(400):
        pdf.add_page()
        for line in range(40):
            pdf.cell(0, 3, f"page {page} line {line} " + "terms and conditions apply " * 3, new_x="LMARGIN",
                     new_y="NEXT")
    catalogue = mail("Catalogue", "Is item 7 on page 2 still sold?", message_id="<pdf@example.org>")
    catalogue.add_attachment(bytes(pdf.output()), maintype="application", subtype="pdf", filename="catalogue.pdf")
    dovecot.append(catalogue)
    extracted: list[int] = []
    real = PageObject.extract_text
    monkeypatch.setattr(PageObject, "extract_text", lambda page, *a, **k: extracted.append(1) or real(page, *a, **k))
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 1)
    text = sink.messages[0].text
    assert "page 1 line 20 terms" in text and text.endswith("[... attachment cut here]")
    assert len(extracted) < 20  # the pages the 20,000 characters come from, not all 400


async def test_a_mail_with_a_huge_header_is_read_in_seconds_and_the_inbox_goes_on(dovecot: Dovecot) -> None:
    """The standard library reads a header in time quadratic in its words: a mail whose References held 100,000
    ids (3 MB) took 200 s to read, one with a 300 KB Content-Type parameter 23 s, every later mail waiting."""
    chain = [f"<chain{i}.abcdefghij@example.org>" for i in range(40_000)]
    # as bytes: EmailMessage would read the headers it is given just as slowly
    dovecot.append(raw_mail("<long@example.org>", "References: " + " ".join(chain), b"And on Monday?\r\n"))
    dovecot.append(raw_mail("<ctype@example.org>", 'Content-Type: text/plain; charset="utf-8"; note="' +
                            "ab " * 100_000 + '"', b"Open today?\r\n"))
    dovecot.append(mail(message_id="<next@example.org>", sender="cleo@example.org"))
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(lambda: len(sink.messages) == 3, 20)
    long, ctype, following = sink.messages
    assert long.thread.endswith("|<chain0.abcdefghij@example.org>") and long.text == "And on Monday?"
    assert long.reply["references"] == [chain[0], *chain[-19:]]  # the root and the latest, as a reply trims them
    assert ctype.text == "Open today?" and following.message_id == "<next@example.org>"


async def test_auto_submitted_no_with_a_comment_is_a_persons_mail_and_answered(dovecot: Dovecot) -> None:
    """RFC 3834 lets the field carry comments: 'Auto-Submitted: no (sent by a person)' read as 'no (sent by a
    person)', not 'no', and a person's mail was skipped as an auto-reply; a comment never hides a real one."""
    dovecot.append(mail("Hours", message_id="<person@example.org>",
                        headers={"Auto-Submitted": "no (sent by a person)"}))
    dovecot.append(mail("Away", message_id="<away@example.org>", sender="bob@example.org",
                        headers={"Auto-Submitted": "(vacation) auto-replied"}))
    sink = Sink()
    async with running(channel(dovecot), sink):
        await until(processed(dovecot, 2))
    assert [m.message_id for m in sink.messages] == ["<person@example.org>"]


async def test_a_very_long_mail_is_cut_with_a_note_that_says_how_long_it_was(dovecot: Dovecot, store_factory) -> None:
    """The mail's text is read up to 60,000 characters, then cut to the server's max_input_chars: the note the
    agent got said the 200,000-character mail 'has 60033 characters', the first cut hiding the real length."""
    from halguru.jobs.pipeline import StoreSink

    dovecot.append(mail("Logs", "Why does this fail?\n" + "x" * 199_980, message_id="<logs@example.org>"))
    sink = StoreSink(store_factory(), max_chars=16_000)
    async with running(channel(dovecot), sink):
        await until(processed(dovecot, 1))
    (job,) = store_factory().list_jobs(limit=10)
    text = job["payload"]["text"]
    assert text.startswith("Why does this fail?\nxxx") and len(text) < 16_200
    assert text.endswith("[the message was cut here: it has 200000 characters and this server reads at most 16000]")
