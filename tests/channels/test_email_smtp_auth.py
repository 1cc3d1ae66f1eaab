"""An SMTP server that wants a login the channel was not given: an operator's mistake, not the recipient's."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from halguru.channels.base import ChannelError, Outbound
from halguru.channels.email import EmailChannel, refused_for_good
from tests.channels.mailpeers import PASSWORD, USER, SmtpRecorder, free_port, smtp_tls_server_fixture
from tests.channels.test_email_inbox import Once

__all__ = ["smtp_tls_server_fixture"]  # pytest finds it here


async def test_a_server_that_requires_a_login_is_a_retried_failure_that_says_what_to_set(
        smtp_tls_server: SmtpRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without smtp.password the server answers '530 Authentication required': the reply was dead at once (a
    5xx), and every answer the agent made until the operator noticed was lost, not sent once they fixed it."""
    assert smtp_tls_server.cert is not None
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp_tls_server.cert))
    monkeypatch.setenv("HG_TEST_IMAP", PASSWORD)
    ch = EmailChannel("helper", {
        "address": USER,
        "imap": {"host": "127.0.0.1", "port": free_port(), "security": "none", "password": "HG_TEST_IMAP"},
        "smtp": {"host": "127.0.0.1", "port": smtp_tls_server.port, "security": "starttls"},
    }, Path("."))
    out = Outbound(channel="email", agent="helper", conversation_id="c", job_id="auth-1", text="Hello.",
                   reply={"to": "ann@example.org", "subject": "Hi", "message_id": "<a@example.org>"})
    with pytest.raises(ChannelError) as caught:
        await ch.send(out, Once())
    assert not caught.value.permanent
    assert "530" in str(caught.value) and "smtp.password" in str(caught.value), str(caught.value)
    assert smtp_tls_server.received == []


@pytest.mark.parametrize(("exc", "permanent"), [
    (smtplib.SMTPSenderRefused(530, b"5.7.0 Authentication required", "bot@example.com"), False),
    (smtplib.SMTPRecipientsRefused({"ann@example.org": (554, b"5.7.1 <ann@example.org>: Relay access denied")}),
     False),
    (smtplib.SMTPRecipientsRefused({"ann@example.org": (550, b"5.1.1 No such user here")}), True),
    (smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"), True),
])
def test_refusals_the_operator_can_fix_are_retried(exc: smtplib.SMTPException, permanent: bool) -> None:
    assert refused_for_good(exc) is permanent
