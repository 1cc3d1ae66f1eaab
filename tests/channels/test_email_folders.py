"""Folder names as operators write them, against a real Dovecot (its hierarchy delimiter is '.')."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.channels.mailpeers import PASSWORD, Dovecot, dovecot_fixture, mail
from tests.channels.test_email_inbox import Sink, channel, running, until

__all__ = ["dovecot_fixture"]  # pytest finds it here


def count(server: Dovecot, folder: str) -> int:
    """How many messages ``folder`` holds; -1 while it does not exist."""
    try:
        return len(server.flags(folder))
    except Exception:
        return -1


@pytest.fixture(autouse=True)
def imap_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HG_TEST_IMAP", PASSWORD)


async def test_folders_written_with_a_slash_are_the_servers_own_folders(dovecot: Dovecot) -> None:
    """'Support/Answered' is how Gmail and most guides write a subfolder; Dovecot's delimiter is '.', and it
    refused the name ('must not have / characters') at every connection, so the inbox was never answered."""
    dovecot.append(mail(message_id="<s1@example.org>"), folder="Support")
    sink = Sink()
    ch = channel(dovecot, processed={"move_to": "Support/Answered"})
    ch.imap_settings = replace(ch.imap_settings, mailbox="Support")
    async with running(ch, sink):
        await until(lambda: count(dovecot, "Support.Answered") == 1)
    assert [m.message_id for m in sink.messages] == ["<s1@example.org>"]
    assert dovecot.flags("Support") == []


async def test_a_mailbox_that_does_not_exist_is_named_with_the_folders_that_do(dovecot: Dovecot) -> None:
    dovecot.append(mail(message_id="<s2@example.org>"), folder="Support")
    ch = channel(dovecot)
    ch.imap_settings = replace(ch.imap_settings, mailbox="Suport")
    async with running(ch, Sink()):
        await until(lambda: ch.status is not None)
    assert ch.status is not None and not ch.status.ok
    detail = ch.status.detail
    assert "imap.mailbox Suport does not exist" in detail and "INBOX" in detail and "Support" in detail, detail
