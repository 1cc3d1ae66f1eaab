"""The whole email pipeline: `halguru worker` (a real process) answers a Dovecot inbox through aiosmtpd.

A mail lands in the inbox -> the worker's email source queues it once -> the scripted agent answers in the
thread's conversation -> exactly one reply reaches the SMTP server, threaded; a reply in the same thread
continues the same conversation (also from a client that sends only In-Reply-To), and a restarted worker
answers nothing twice.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from halguru.store import open_store
from tests.channels.mailpeers import (
    PASSWORD,
    USER,
    Dovecot,
    SmtpRecorder,
    dovecot_fixture,
    email_config,
    mail,
    smtp_server_fixture,
)

__all__ = ["dovecot_fixture", "smtp_server_fixture"]  # pytest finds them here


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def start_worker(tmp_path: Path, dovecot: Dovecot, smtp_server: SmtpRecorder, halguru_cmd: list[str],
                 subprocess_env: dict[str, str]) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    folder = tmp_path / "agents" / "helpdesk"
    folder.mkdir(parents=True)
    (folder / "agent.yaml").write_text(yaml.safe_dump({
        "name": "helpdesk", "model": "scripted", "instructions": "Answer customers.",
        "channels": {"email": email_config(dovecot, smtp_server.port)}}))
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"job_poll": 0.1, "job_backoff": 0.1, "shutdown_timeout": 2}))
    env = {**subprocess_env, "HG_TEST_IMAP": PASSWORD}
    procs: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen([*halguru_cmd, "worker", str(folder), "--config", str(config)], env=env,
                                text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, as an operator stops a worker; what it wrote to stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def test_a_mail_gets_exactly_one_threaded_reply_from_the_agent(
        start_worker: Callable[[], subprocess.Popen[str]], dovecot: Dovecot, smtp_server: SmtpRecorder) -> None:
    worker = start_worker()
    dovecot.append(mail("Opening hours", "When are you open on Sunday?", message_id="<q1@example.org>"))
    wait_for(lambda: len(smtp_server.received) >= 1, "the reply")
    (reply,) = smtp_server.received
    assert reply["To"] == "ann@example.org" and reply["From"] == USER
    assert reply["Subject"] == "Re: Opening hours"
    assert reply["In-Reply-To"] == "<q1@example.org>" and str(reply["References"]) == "<q1@example.org>"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert "When are you open on Sunday?" in reply.get_content()  # the scripted model echoes the question
    assert smtp_server.envelopes == [(USER, ["ann@example.org"])]

    # the customer answers our reply: same thread, same conversation, a second reply chained to both
    dovecot.append(mail("Re: Opening hours", "And on Monday?", message_id="<q2@example.org>",
                        headers={"In-Reply-To": str(reply["Message-ID"]),
                                 "References": f"<q1@example.org> {reply['Message-ID']}"}))
    wait_for(lambda: len(smtp_server.received) >= 2, "the second reply")
    second = smtp_server.received[1]
    assert second["Subject"] == "Re: Opening hours" and second["In-Reply-To"] == "<q2@example.org>"
    assert str(second["References"]).split() == ["<q1@example.org>", str(reply["Message-ID"]), "<q2@example.org>"]
    assert "And on Monday?" in second.get_content()
    # a client that sends only In-Reply-To (no References): still the thread's conversation, and our answer's
    # References start at the thread's root again (it started a conversation of its own, the agent forgetting)
    store = open_store()
    # the worker records a reply as sent (and marks its job done) a moment after the SMTP server has it
    wait_for(lambda: [j["status"] for j in store.list_jobs(10)] == ["done"] * 2, "both jobs to be done")
    dovecot.append(mail("Re: Opening hours", "And on Tuesday?", message_id="<q3@example.org>",
                        headers={"In-Reply-To": str(second["Message-ID"])}))
    wait_for(lambda: len(smtp_server.received) >= 3, "the third reply")
    third = smtp_server.received[2]
    assert third["In-Reply-To"] == "<q3@example.org>"
    assert str(third["References"]).split() == ["<q1@example.org>", str(second["Message-ID"]), "<q3@example.org>"]
    wait_for(lambda: [j["status"] for j in store.list_jobs(10)] == ["done"] * 3, "the jobs to be done")
    jobs = store.list_jobs(10)
    conversations = {j["result"]["conversation_id"] for j in jobs}
    assert len(conversations) == 1  # one conversation per email thread
    assert [m.role for m in store.get_messages(conversations.pop())] == ["user", "assistant"] * 3
    assert all("\\Seen" in f and "$HalguruAnswered" in f for f in dovecot.flags())

    # a restarted worker finds nothing to answer; an auto-reply to our mail is marked, not answered
    err = stop(worker)
    assert "Traceback" not in err, err
    worker = start_worker()
    dovecot.append(mail("Automatic reply: Opening hours", "I am away.", message_id="<ooo@example.org>",
                        headers={"Auto-Submitted": "auto-replied"}))
    wait_for(lambda: len(dovecot.flags()) == 4 and all("$HalguruAnswered" in f for f in dovecot.flags()),
             "the auto-reply to be marked processed")
    time.sleep(1.0)  # time enough for a wrong second answer to arrive
    assert len(smtp_server.received) == 3
    assert len(open_store().list_jobs(10)) == 3
    err = stop(worker)
    assert "Traceback" not in err, err
